/**
 * JWT_JWKS_URL: tokens signed with a key published at a JWKS endpoint verify; another key, or
 * an endpoint that does not answer, does not (the latter as a dependency failure, not as an
 * invalid token).
 */
import assert from "node:assert/strict";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { JwtVerifier } from "../../../src/auth/mod.ts";
import { InvalidTokenError } from "../../../src/connection/mod.ts";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import { freePort } from "../../_helpers/services.ts";

Deno.test("JwtVerifier with JWT_JWKS_URL verifies RS256, ES256 and EdDSA tokens from a JWKS", async () => {
  const keys = await Promise.all((["RS256", "ES256", "EdDSA"] as const).map(async (alg, i) => {
    const pair = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: `k${i}`, alg };
    return { alg, kid: `k${i}`, privateKey: pair.privateKey, jwk };
  }));
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json({ keys: keys.map((k) => k.jwk) }),
  );
  try {
    const verifier = new JwtVerifier({
      key: { kind: "jwks", url: `http://127.0.0.1:${server.addr.port}/jwks.json` },
      issuer: "https://issuer.example",
    });
    for (const key of keys) {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: key.alg, kid: key.kid })
        .setSubject(`user-${key.alg}`)
        .setIssuer("https://issuer.example")
        .setExpirationTime("5m")
        .sign(key.privateKey);
      assert.equal((await verifier.verify(token)).userId, `user-${key.alg}`);
    }
    const stranger = await generateKeyPair("ES256");
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k1" })
      .setSubject("mallory")
      .setIssuer("https://issuer.example")
      .setExpirationTime("5m")
      .sign(stranger.privateKey);
    await assert.rejects(verifier.verify(forged), InvalidTokenError);
  } finally {
    await server.shutdown();
  }
});

Deno.test("JwtVerifier reports an unreachable JWKS as a dependency failure, not a bad token", async () => {
  const verifier = new JwtVerifier({
    key: { kind: "jwks", url: `http://127.0.0.1:${freePort()}/jwks.json` },
  });
  const { privateKey } = await generateKeyPair("ES256");
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "ES256", kid: "k" })
    .setSubject("u")
    .setExpirationTime("5m")
    .sign(privateKey);
  await assert.rejects(verifier.verify(token), DependencyUnavailableError);
});
