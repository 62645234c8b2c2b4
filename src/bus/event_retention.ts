/**
 * How long a user's events are kept for resume and backfill, shared by both engines.
 *
 * @module
 */

/** How much of each user's log an engine keeps. */
export interface EventRetention {
  /** At most this many events per user (older ones are dropped first). */
  readonly count: number;
  /** Events older than this many seconds are dropped; ended runs are remembered as long. */
  readonly seconds: number;
}

/**
 * Checks a retention setting.
 *
 * @throws {RangeError} when a field is not a positive integer.
 */
export function checkRetention(retention: EventRetention): void {
  for (const field of ["count", "seconds"] as const) {
    const value = retention[field];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(
        `Cannot create event engine: "retention.${field}" must be a positive integer, received ${value}`,
      );
    }
  }
}
