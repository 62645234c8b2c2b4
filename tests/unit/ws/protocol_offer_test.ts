import assert from "node:assert/strict";
import { isOriginAllowed, parseProtocolOffer } from "../../../src/ws/mod.ts";

Deno.test("parseProtocolOffer() reads both spellings of a comma list", () => {
  for (
    const header of [
      "agentsocket.v1, bearer.abc",
      "agentsocket.v1,bearer.abc",
      " agentsocket.v1 ,bearer.abc ",
    ]
  ) {
    assert.deepEqual(parseProtocolOffer(header), {
      entries: ["agentsocket.v1", "bearer.abc"],
      hasV1: true,
      bearerTokens: ["abc"],
    });
  }
});

Deno.test("parseProtocolOffer() matches agentsocket.v1 exactly", () => {
  assert.equal(parseProtocolOffer("agentsocket.v10").hasV1, false);
  assert.equal(parseProtocolOffer("xagentsocket.v1").hasV1, false);
  assert.equal(parseProtocolOffer(null).entries.length, 0);
  assert.deepEqual(parseProtocolOffer("bearer.").bearerTokens, []);
});

Deno.test("isOriginAllowed() follows ALLOWED_ORIGINS and the environment's default", () => {
  const dev = { production: false };
  const prod = { production: true };
  assert.equal(isOriginAllowed(null, "api.example", prod), true);
  assert.equal(isOriginAllowed("https://evil.example", "api.example", dev), true);
  assert.equal(isOriginAllowed("https://evil.example", "api.example", prod), false);
  assert.equal(isOriginAllowed("https://api.example", "api.example", prod), true);
  const listed = { production: true, allowed: ["https://app.example"] };
  assert.equal(isOriginAllowed("https://app.example", "api.example", listed), true);
  assert.equal(isOriginAllowed("https://api.example", "api.example", listed), false);
  assert.equal(isOriginAllowed("garbage", "api.example", prod), false);
});
