/**
 * Waiting without sleeping blind: every wait here is a poll with a deadline.
 *
 * @module
 */

/** Options of {@link pollUntil}. */
export interface PollOptions {
  /** Gives up after this many milliseconds. */
  timeoutMs: number;
  /**
   * Pause between two attempts, in milliseconds.
   *
   * @default 50
   */
  intervalMs?: number;
  /** Stops the poll early; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Raised when a poll or a bounded wait runs out of time. */
export class DeadlineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeadlineError";
  }
}

/**
 * Calls `attempt` until it returns something other than `undefined`, and returns that.
 *
 * An attempt that throws stops the poll with its error; use `undefined` for "not yet".
 *
 * @param what Names what is awaited, for the timeout message.
 * @param attempt One try; it should bound its own duration.
 * @throws {DeadlineError} when `options.timeoutMs` passes first.
 */
export async function pollUntil<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  options: PollOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  const intervalMs = options.intervalMs ?? 50;
  // Bounded: each pass waits at least intervalMs, and the deadline ends the loop.
  while (true) {
    options.signal?.throwIfAborted();
    const value = await attempt();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new DeadlineError(`Timed out after ${options.timeoutMs} ms waiting for ${what}`);
    }
    await pause(Math.min(intervalMs, left), options.signal);
  }
}

/**
 * Settles with `promise`, or rejects with a {@link DeadlineError} after `ms`.
 *
 * The timer is cleared either way, so nothing is left pending.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits `ms` between two poll attempts; an abort ends the wait at once. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
