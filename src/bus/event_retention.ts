/**
 * How long a user's events are kept for resume and backfill, shared by both engines.
 *
 * @module
 */

/**
 * How much of each user's log an engine keeps. Both limits apply only to events older than the
 * oldest `agent_started` of the user's runs in flight: an event of a run in flight is never
 * dropped (`retentionFloor()` in `_engine_rules.ts`).
 */
export interface EventRetention {
  /** At most this many events per user, unless runs in flight hold more (oldest go first). */
  readonly count: number;
  /**
   * Events older than this many seconds are dropped; ended runs, purges and a run's approval
   * records are remembered as long after the run's end.
   */
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
