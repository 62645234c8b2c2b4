/**
 * The clock, timers and randomness the client uses. Tests inject their own, so that backoff,
 * token refresh and keepalive are driven by hand and nothing sleeps.
 *
 * @module
 */

/** An opaque timer handle, as returned by {@link ClientTimers.setTimeout}. */
export type TimerHandle = unknown;

/** Time and chance, injectable. */
export interface ClientTimers {
  /** Calls `callback` once after `ms` milliseconds. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a no-op for one that already fired. */
  clearTimeout(handle: TimerHandle): void;
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** A number in [0, 1). */
  random(): number;
}

/** The platform's timers (browsers and Deno alike). */
export const systemTimers: ClientTimers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as number),
  now: () => Date.now(),
  random: () => Math.random(),
};
