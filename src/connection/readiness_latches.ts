/**
 * One promise per lifecycle milestone of a connection, settled once. Entering a state resolves
 * its latch; entering `closing` rejects every milestone not yet reached with a
 * {@link ConnectionClosedError}, which is a normal outcome for whoever awaits it.
 *
 * @module
 */
import { CONNECTION_STATES } from "./application_connection_state.ts";
import type { ApplicationConnectionState } from "./application_connection_state.ts";
import type { ConnectionCloseError } from "../protocol/mod.ts";

/** A milestone will never be reached because the connection closed first. */
export class ConnectionClosedError extends Error {
  /** The close decision, when the server made one. */
  readonly closeCause?: ConnectionCloseError;
  constructor(cause?: ConnectionCloseError) {
    super(cause ? `Connection closed: ${cause.message}` : "Connection closed", { cause });
    this.name = "ConnectionClosedError";
    this.closeCause = cause;
  }
}

/** The milestones that entering `closing` first rejects. */
const REJECTED_BY_CLOSING = [
  "accepted",
  "authenticated",
  "services_ready",
  "processing_ready",
] as const;

const BIT = Object.fromEntries(CONNECTION_STATES.map((state, i) => [state, 1 << i])) as Record<
  ApplicationConnectionState,
  number
>;

/**
 * The readiness promises of one connection.
 *
 * Each milestone settles exactly once, as if its promise were made eagerly, but the promise
 * itself is made only when {@link whenReached} first asks for it: every connection records
 * its milestones, few are ever awaited (tests and embedders do), and seven eager promises cost
 * about 3 KB and 1 µs per connection (`deno task bench`, micro and memory). Likewise the
 * {@link ConnectionClosedError} is made only when a rejection is handed out; every rejection
 * of one connection is that same error.
 */
export class ReadinessLatches {
  #latches?: Map<ApplicationConnectionState, PromiseWithResolvers<void>>;
  /** Milestones settled as reached, one bit each. */
  #resolved = 0;
  /** Milestones settled as never reached (closing came first). */
  #rejected = 0;
  #cause?: ConnectionCloseError;
  #error?: ConnectionClosedError;

  /** Resolves when `state` is reached; rejects with ConnectionClosedError if closing comes first. */
  whenReached(state: ApplicationConnectionState): Promise<void> {
    let latch = this.#latches?.get(state);
    if (latch === undefined) {
      latch = Promise.withResolvers<void>();
      // Deno exits on an unhandled rejection; awaiters still see the rejection.
      latch.promise.catch(() => {});
      (this.#latches ??= new Map()).set(state, latch);
      if (this.#resolved & BIT[state]) latch.resolve();
      else if (this.#rejected & BIT[state]) latch.reject(this.#closedError());
    }
    return latch.promise;
  }

  /** Called only by the actor's single state writer. Settling twice is a no-op. */
  markReached(state: ApplicationConnectionState, cause?: ConnectionCloseError): void {
    this.#settle(state, true);
    if (state !== "closing" || this.#rejected !== 0) return;
    this.#cause = cause;
    for (const s of REJECTED_BY_CLOSING) this.#settle(s, false); // a no-op for one reached
  }

  #settle(state: ApplicationConnectionState, reached: boolean): void {
    const bit = BIT[state];
    if ((this.#resolved | this.#rejected) & bit) return;
    if (reached) this.#resolved |= bit;
    else this.#rejected |= bit;
    const latch = this.#latches?.get(state);
    if (latch === undefined) return;
    if (reached) latch.resolve();
    else latch.reject(this.#closedError());
  }

  #closedError(): ConnectionClosedError {
    return this.#error ??= new ConnectionClosedError(this.#cause);
  }
}
