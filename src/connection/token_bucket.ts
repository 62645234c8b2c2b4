/**
 * The inbound rate limit of one connection: a token bucket refilled at a sustained rate up to
 * a burst. A frame past the burst is answered `rate_limited`; a client that goes on a whole
 * burst past empty is abusive (closed 1008).
 *
 * @module
 */

/** Options of {@link TokenBucket}. */
export interface TokenBucketOptions {
  /** Tokens added per second. */
  readonly perSecond: number;
  /** The bucket's size (and how far below empty counts as abuse). */
  readonly burst: number;
}

/** What taking a token for one frame came to. */
export type TokenVerdict = "ok" | "limited" | "abusive";

/** A token bucket; {@link take} is its only writer. */
export class TokenBucket {
  #options: TokenBucketOptions;
  #tokens: number;
  #at = 0;

  constructor(options: TokenBucketOptions) {
    this.#options = options;
    this.#tokens = options.burst;
  }

  /** Tokens left (negative once the client is past the burst). */
  get tokens(): number {
    return this.#tokens;
  }

  /**
   * Refills for the time since the last frame, then takes one token.
   *
   * @param now The current time in ms.
   */
  take(now: number): TokenVerdict {
    const { perSecond, burst } = this.#options;
    const elapsed = (now - this.#at) / 1000;
    this.#at = now;
    this.#tokens = Math.min(burst, this.#tokens + elapsed * perSecond) - 1;
    if (this.#tokens >= 0) return "ok";
    return this.#tokens <= -burst ? "abusive" : "limited";
  }
}
