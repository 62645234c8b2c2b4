import assert from "node:assert/strict";
import { jwtExpiry } from "../../../src/client/mod.ts";

function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replaceAll("=", "");
}

function jwt(payload: unknown): string {
  return `${base64url('{"alg":"HS256"}')}.${base64url(JSON.stringify(payload))}.sig`;
}

Deno.test("jwtExpiry() reads exp from the payload without verifying the signature", () => {
  assert.equal(jwtExpiry(jwt({ sub: "alice", exp: 1_900_000_000 })), 1_900_000_000);
});

Deno.test("jwtExpiry() decodes base64url payloads with non-ASCII claims", () => {
  assert.equal(jwtExpiry(jwt({ sub: "zoë ✓ ~~~???>>>", exp: 42 })), 42);
});

Deno.test("jwtExpiry() returns undefined for anything that is not a JWT with a numeric exp", () => {
  for (
    const token of ["", "abc", "a.b", "a.b.c.d", "a.!!!.c", jwt({ sub: "x" }), jwt({ exp: "1" })]
  ) {
    assert.equal(jwtExpiry(token), undefined, token);
  }
  assert.equal(jwtExpiry(jwt(null)), undefined);
});
