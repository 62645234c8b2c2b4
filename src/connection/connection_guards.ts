/**
 * The switches of the guards that make a connection race-free. Production code is given
 * {@link SAFE_GUARDS} (every guard on) and never builds another: only the test seams
 * (`src/server/test_seams.ts`, from `TEST_UNSAFE_GUARDS_OFF`, refused in production) switch one
 * off, so the race suite can show that the test guarding it fails without it.
 *
 * @module
 */

/** One switch per guard of the connection actor; `true` is the guard on. */
export interface ConnectionGuards {
  /** Nothing is processed, sent or closed before the socket is open. */
  readonly waitForOpen: boolean;
  /** Frames after `hello` wait in the mailbox until `ready`. */
  readonly queueBeforeReady: boolean;
  /** Live events wait in the mailbox until `ready`. */
  readonly holdEventsUntilReady: boolean;
  /** Events at or below the delivered seq are dropped; a gap is backfilled. */
  readonly dedupeBySeq: boolean;
}

/** Every guard on: what production runs. */
export const SAFE_GUARDS: ConnectionGuards = Object.freeze({
  waitForOpen: true,
  queueBeforeReady: true,
  holdEventsUntilReady: true,
  dedupeBySeq: true,
});
