/**
 * Reconnect delays: exponential backoff with jitter.
 *
 * @module
 */

/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /** The ceiling of the first delay, in ms. @default 250 */
  readonly initialDelayMs?: number;
  /** The largest ceiling, in ms. @default 10000 */
  readonly maxDelayMs?: number;
}

/** Defaults of {@link BackoffOptions}. */
export const DEFAULT_BACKOFF = { initialDelayMs: 250, maxDelayMs: 10_000 } as const;

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry): the ceiling doubles
 * each attempt up to `maxDelayMs`, and the delay is drawn from its upper half ("equal jitter"),
 * so clients spread out yet never retry in a tight loop.
 *
 * @example Delays grow, then stay under the ceiling
 * ```ts
 * import { backoffDelay } from "./backoff.ts";
 * backoffDelay(0, { random: () => 0 }); // 125
 * backoffDelay(3, { random: () => 0.999 }); // just under 2000
 * ```
 *
 * @param attempt How many attempts failed in a row before this one (0-based).
 * @param options The ceilings and the random source.
 * @returns Milliseconds to wait.
 * @throws {RangeError} When `attempt` is negative or not an integer.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions & { readonly random?: () => number } = {},
): number {
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`Cannot compute backoff: "attempt" must be >= 0, received ${attempt}`);
  }
  const initial = options.initialDelayMs ?? DEFAULT_BACKOFF.initialDelayMs;
  const max = Math.max(initial, options.maxDelayMs ?? DEFAULT_BACKOFF.maxDelayMs);
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.floor(ceiling / 2 + random() * (ceiling / 2));
}
