/**
 * Token verification (jose) and development tokens (`docs/protocol.md#tokens`).
 *
 * {@link createVerifier} builds both from the configuration.
 *
 * @module
 */
import { DevTokenIssuer, randomSecret } from "./dev_token_issuer.ts";
import { JwtVerifier } from "./token_verifier.ts";
import type { VerificationKey } from "./token_verifier.ts";

export * from "./token_verifier.ts";
export * from "./dev_token_issuer.ts";

/** What {@link createVerifier} reads of the configuration. */
export interface AuthConfig {
  /** Where the verification key comes from; `dev_secret`: a random secret made at boot. */
  readonly key:
    | { readonly kind: "dev_secret" }
    | { readonly kind: "secret"; readonly secret: string }
    | { readonly kind: "jwks"; readonly url: string }
    | { readonly kind: "public_key"; readonly key: string };
  readonly issuer?: string;
  readonly audience?: string;
  readonly clockToleranceSeconds: number;
  /** Whether `POST /auth/dev-token` may issue tokens (never in production). */
  readonly devTokens: boolean;
}

/** A verifier and, in development with a secret, the matching dev-token issuer. */
export interface Auth {
  readonly verifier: JwtVerifier;
  /** Signs with the verifier's secret; absent in production or with asymmetric keys. */
  readonly devTokens?: DevTokenIssuer;
}

/**
 * Builds token verification from the configuration.
 *
 * @param config The JWT settings.
 * @returns The verifier, ready to use, and the dev-token issuer when allowed.
 * @throws {Error} when the configured public key cannot be used (its message says why).
 */
export async function createVerifier(config: AuthConfig): Promise<Auth> {
  const { issuer, audience } = config;
  const { key, secret } = keysOf(config.key);
  const verifier = new JwtVerifier({
    key,
    issuer,
    audience,
    clockToleranceSeconds: config.clockToleranceSeconds,
  });
  await verifier.ready();
  const devTokens = config.devTokens && secret
    ? new DevTokenIssuer({ secret, issuer, audience })
    : undefined;
  return { verifier, devTokens };
}

/** The verification key of a key source, and the signing secret when it is symmetric. */
function keysOf(source: AuthConfig["key"]): { key: VerificationKey; secret?: Uint8Array } {
  switch (source.kind) {
    case "dev_secret": {
      const secret = randomSecret(); // dev tokens die with the process
      return { key: { kind: "secret", secret }, secret };
    }
    case "secret": {
      const secret = new TextEncoder().encode(source.secret);
      return { key: { kind: "secret", secret }, secret };
    }
    case "jwks":
      return { key: { kind: "jwks", url: source.url } };
    case "public_key":
      return { key: { kind: "public_key", key: source.key } };
  }
}
