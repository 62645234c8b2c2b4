/**
 * Issues HS256 tokens for development (`POST /auth/dev-token`): signed with `JWT_SECRET` when
 * set, otherwise with a random secret made at boot, so tokens die with the process.
 *
 * @module
 */
import { SignJWT } from "jose";

/** Options of {@link DevTokenIssuer}. */
export interface DevTokenIssuerOptions {
  readonly secret: Uint8Array;
  readonly issuer?: string;
  readonly audience?: string;
  /** Lifetime of an issued token, in seconds. @default 3600 */
  readonly ttlSeconds?: number;
  readonly now?: () => number;
}

/** Signs short-lived tokens for a user id. */
export class DevTokenIssuer {
  #options: DevTokenIssuerOptions;

  constructor(options: DevTokenIssuerOptions) {
    this.#options = options;
  }

  /**
   * Issues a token whose `sub` is `userId`.
   *
   * @param userId The user.
   * @param ttlSeconds Lifetime (defaults to the issuer's).
   */
  async issue(userId: string, ttlSeconds?: number): Promise<string> {
    const now = Math.floor((this.#options.now?.() ?? Date.now()) / 1000);
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(userId)
      .setIssuedAt(now)
      .setExpirationTime(now + (ttlSeconds ?? this.#options.ttlSeconds ?? 3600));
    if (this.#options.issuer) jwt.setIssuer(this.#options.issuer);
    if (this.#options.audience) jwt.setAudience(this.#options.audience);
    return await jwt.sign(this.#options.secret);
  }
}

/** A random 32-byte secret. */
export function randomSecret(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}
