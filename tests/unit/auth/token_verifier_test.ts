import assert from "node:assert/strict";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { DevTokenIssuer, JwtVerifier } from "../../../src/auth/mod.ts";
import { InvalidTokenError } from "../../../src/connection/mod.ts";

const secret = new TextEncoder().encode("s".repeat(32));
const now = () => Math.floor(Date.now() / 1000);

Deno.test("JwtVerifier.verify() accepts a dev token and returns sub and exp", async () => {
  const token = await new DevTokenIssuer({ secret }).issue("alice", 60);
  const principal = await new JwtVerifier({ key: { kind: "secret", secret } }).verify(token);
  assert.equal(principal.userId, "alice");
  assert.ok(Math.abs(principal.exp - (now() + 60)) <= 2);
});

Deno.test("JwtVerifier.verify() refuses bad tokens with InvalidTokenError", async () => {
  const verifier = new JwtVerifier({
    key: { kind: "secret", secret },
    issuer: "iss",
    audience: "aud",
    clockToleranceSeconds: 5,
  });
  const sign = (claims: Record<string, unknown>, key = secret) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(key);
  const good = { sub: "u", iss: "iss", aud: "aud", exp: now() + 60 };
  assert.equal((await verifier.verify(await sign(good))).userId, "u");
  const bad = [
    "not-a-jwt",
    "",
    await sign({ ...good, exp: now() - 60 }),
    await sign({ ...good, iss: "other" }),
    await sign({ ...good, aud: "other" }),
    await sign({ iss: "iss", aud: "aud", exp: now() + 60 }),
    await sign({ sub: "u", iss: "iss", aud: "aud" }),
    await sign(good, new TextEncoder().encode("t".repeat(32))),
    await sign({ ...good, sub: "x".repeat(300) }),
  ];
  for (const token of bad) {
    await assert.rejects(verifier.verify(token), InvalidTokenError, token.slice(0, 20));
  }
});

Deno.test("JwtVerifier.verify() tolerates clock skew within the tolerance", async () => {
  const verifier = new JwtVerifier({ key: { kind: "secret", secret }, clockToleranceSeconds: 5 });
  const token = await new SignJWT({ sub: "u", exp: now() - 2 })
    .setProtectedHeader({ alg: "HS256" })
    .sign(secret);
  assert.equal((await verifier.verify(token)).userId, "u");
});

Deno.test("JwtVerifier.verify() accepts RS256, ES256 and EdDSA with a PEM or JWK public key", async () => {
  for (const alg of ["RS256", "ES256", "EdDSA"] as const) {
    const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
    const token = await new SignJWT({ sub: `user-${alg}`, exp: now() + 60 })
      .setProtectedHeader({ alg })
      .sign(privateKey);
    const pem = await exportSPKI(publicKey);
    const jwk = JSON.stringify(await exportJWK(publicKey));
    for (const key of [pem, jwk]) {
      const verifier = new JwtVerifier({ key: { kind: "public_key", key } });
      assert.equal((await verifier.verify(token)).userId, `user-${alg}`);
      const hs = await new SignJWT({ sub: "u", exp: now() + 60 })
        .setProtectedHeader({ alg: "HS256" })
        .sign(secret);
      await assert.rejects(verifier.verify(hs), InvalidTokenError);
    }
  }
});

Deno.test("JwtVerifier.ready() rejects a public key that is not one", async () => {
  const verifier = new JwtVerifier({
    key: { kind: "public_key", key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" },
  });
  await assert.rejects(verifier.ready(), TypeError);
});
