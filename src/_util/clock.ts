/**
 * Time as a dependency: everything that waits or stamps goes through a {@link Clock},
 * so unit tests drive time by hand instead of sleeping.
 *
 * @module
 */

/** A scheduled callback that can be cancelled; cancelling twice is a no-op. */
export interface Timer {
  /** Stops the callback from running, if it has not run yet. */
  cancel(): void;
}

/** The source of wall time and timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `callback` once after `ms` milliseconds. */
  setTimer(callback: () => void, ms: number): Timer;
}

/** The real clock: `Date.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(callback, ms) {
    const id = setTimeout(callback, Math.max(0, ms));
    return { cancel: () => clearTimeout(id) };
  },
};

/**
 * Resolves after `ms` on `clock`, or rejects with the signal's reason when aborted first.
 *
 * @param clock The clock that measures the wait.
 * @param ms How long to wait, in milliseconds.
 * @param options.signal Aborts the wait.
 */
export function delay(
  clock: Clock,
  ms: number,
  options: { signal?: AbortSignal } = {},
): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (ms <= 0 && !signal) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      timer.cancel();
      reject(signal!.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
