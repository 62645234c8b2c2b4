/**
 * What the stream phase's model server streams and its load generator checks: the reply's
 * pieces, the first piece's time stamp, and the clock both processes stamp with.
 *
 * The first piece carries the time the model server wrote it (`[t=<ms>] `); every other piece
 * is known in advance, so a client can check a run's text without asking the model server.
 *
 * @module
 */

/**
 * The time now, in ms since the Unix epoch with sub-millisecond resolution:
 * `performance.timeOrigin + performance.now()`. Two processes on one machine read the same
 * kernel clock this way (the wall clock at their start, then the monotonic clock, which the
 * kernel slews alike), so their readings can be compared; the stream phase measures how well
 * they agree (see `clockCheck` in the load generator) rather than assuming it.
 */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The model server's route that answers its {@link preciseNow}, as `{ "now": <ms> }`. */
export const MODEL_CLOCK_ROUTE = "/__bench/clock";

const STAMP = /^\[t=(\d+\.\d+)\] /;

/** The first piece: the time it is written, in µs, as text. */
export function stampPiece(ms: number): string {
  return `[t=${ms.toFixed(3)}] `;
}

/** The time a first piece carries, or undefined when the text does not start with one. */
export function parseStamp(text: string): number | undefined {
  const match = STAMP.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The pieces after the first of a reply of `pieces` pieces: short words, as a model's tokens
 * are, each different so that a lost, doubled or reordered piece changes the text.
 */
export function streamTail(pieces: number): string[] {
  return Array.from({ length: Math.max(0, pieces - 1) }, (_, i) => ` w${i + 1}`);
}

/**
 * The most of `times` (ms, ascending) that fall in any window of `windowMs` ms, ends included:
 * how many events a run published in its busiest second.
 */
export function maxInWindow(times: readonly number[], windowMs: number): number {
  let most = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end] - times[start] > windowMs) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}
