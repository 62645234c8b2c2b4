/**
 * Verifies bearer JWTs with jose: HS256 with a secret (configured, or random per boot in
 * development), or RS256/ES256/EdDSA with a JWKS URL or a public key (`docs/protocol.md#tokens`).
 *
 * @module
 */
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  importJWK,
  importSPKI,
  jwtVerify,
} from "jose";
import type { CryptoKey, JWK, JWTPayload, JWTVerifyGetKey, KeyObject } from "jose";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { InvalidTokenError } from "../connection/mod.ts";
import type { Principal, TokenVerifier } from "../connection/mod.ts";

/** Longest accepted `sub`, in characters. */
export const MAX_USER_ID_LENGTH = 256;

/** The algorithms accepted for asymmetric keys. */
export const ASYMMETRIC_ALGORITHMS = ["RS256", "ES256", "EdDSA"] as const;

/** How a {@link JwtVerifier} finds its key. */
export type VerificationKey =
  | { readonly kind: "secret"; readonly secret: Uint8Array }
  | { readonly kind: "jwks"; readonly url: string }
  | { readonly kind: "public_key"; readonly key: string };

/** Options of {@link JwtVerifier}. */
export interface JwtVerifierOptions {
  readonly key: VerificationKey;
  /** Checked when set. */
  readonly issuer?: string;
  /** Checked when set. */
  readonly audience?: string;
  /** Tolerance on `exp` and `nbf`, in seconds. @default 5 */
  readonly clockToleranceSeconds?: number;
  /** The current time in ms (injected for tests). */
  readonly now?: () => number;
}

type KeyInput = Uint8Array | CryptoKey | KeyObject | JWTVerifyGetKey;

/** A {@link TokenVerifier} backed by jose. */
export class JwtVerifier implements TokenVerifier {
  #options: JwtVerifierOptions;
  #key: Promise<{ key: KeyInput; algorithms: string[] }>;

  constructor(options: JwtVerifierOptions) {
    this.#options = options;
    this.#key = resolveKey(options.key);
    this.#key.catch(() => {}); // surfaced by verify()
  }

  /** Resolves once the configured key is usable; rejects with a clear message otherwise. */
  async ready(): Promise<void> {
    await this.#key;
  }

  async verify(token: string): Promise<Principal> {
    const { key, algorithms } = await this.#key;
    let payload: JWTPayload;
    try {
      const result = await jwtVerify(token, key as Uint8Array, {
        algorithms,
        issuer: this.#options.issuer,
        audience: this.#options.audience,
        clockTolerance: this.#options.clockToleranceSeconds ?? 5,
        requiredClaims: ["sub", "exp"],
        currentDate: this.#options.now ? new Date(this.#options.now()) : undefined,
      });
      payload = result.payload;
    } catch (error) {
      if (error instanceof errors.JWKSTimeout || isNetworkError(error)) {
        throw new DependencyUnavailableError("jwks", "JWKS could not be fetched", { cause: error });
      }
      throw new InvalidTokenError(describeJoseError(error), { cause: error });
    }
    const sub = payload.sub;
    if (typeof sub !== "string" || sub.length === 0 || sub.length > MAX_USER_ID_LENGTH) {
      throw new InvalidTokenError(`Token "sub" must be 1 to ${MAX_USER_ID_LENGTH} characters`);
    }
    if (typeof payload.exp !== "number") throw new InvalidTokenError('Token "exp" is required');
    return { userId: sub, exp: payload.exp };
  }
}

async function resolveKey(
  source: VerificationKey,
): Promise<{ key: KeyInput; algorithms: string[] }> {
  switch (source.kind) {
    case "secret": {
      // Imported once: given raw bytes, jose would import the key again on every verify.
      const key = await crypto.subtle.importKey(
        "raw",
        source.secret as Uint8Array<ArrayBuffer>,
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["verify"],
      );
      return { key, algorithms: ["HS256"] };
    }
    case "jwks":
      return {
        key: createRemoteJWKSet(new URL(source.url), {
          timeoutDuration: 3000,
          cooldownDuration: 5000,
        }),
        algorithms: [...ASYMMETRIC_ALGORITHMS],
      };
    case "public_key":
      return await importPublicKey(source.key);
  }
}

/**
 * Imports a PEM (SPKI) or JWK public key. The algorithm is not configured separately: the key
 * is tried against each accepted algorithm, and a token is checked with the one its key fits.
 */
async function importPublicKey(text: string): Promise<{ key: KeyInput; algorithms: string[] }> {
  const keys = new Map<string, CryptoKey>();
  for (const alg of ASYMMETRIC_ALGORITHMS) {
    try {
      const key = text.trim().startsWith("{")
        ? await importJWK(JSON.parse(text) as JWK, alg)
        : await importSPKI(text, alg);
      if (key instanceof Uint8Array) continue;
      keys.set(alg, key as CryptoKey);
    } catch {
      // not a key of this algorithm
    }
  }
  if (keys.size === 0) {
    throw new TypeError("JWT_PUBLIC_KEY is not an RSA, EC P-256 or Ed25519 public key");
  }
  const getKey: JWTVerifyGetKey = (header) => {
    const key = header.alg ? keys.get(header.alg) : undefined;
    if (!key) throw new errors.JOSEAlgNotAllowed(`Algorithm "${header.alg}" does not fit the key`);
    return key;
  };
  return { key: getKey, algorithms: [...keys.keys()] };
}

function isNetworkError(error: unknown): boolean {
  return error instanceof TypeError && /fetch|network|connect/i.test(error.message);
}

function describeJoseError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return "Token expired";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "Bad token signature";
  if (error instanceof errors.JWTClaimValidationFailed) {
    return `Token claim "${error.claim}" invalid`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "Token algorithm not allowed";
  if (error instanceof errors.JOSEError) return "Malformed token";
  return "Invalid token";
}

/** The `alg` a token claims, or undefined when its header cannot be read. */
export function tokenAlgorithm(token: string): string | undefined {
  try {
    return decodeProtectedHeader(token).alg;
  } catch {
    return undefined;
  }
}
