/**
 * One promise per lifecycle milestone of a connection, made eagerly and settled once. Entering
 * a state resolves its latch; entering `closing` rejects every milestone not yet reached with a
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

/** The readiness promises of one connection. */
export class ReadinessLatches {
  #latches = new Map(
    CONNECTION_STATES.map((state) => [state, Promise.withResolvers<void>()] as const),
  );

  constructor() {
    // Deno exits on an unhandled rejection; awaiters still see the rejection.
    for (const latch of this.#latches.values()) latch.promise.catch(() => {});
  }

  /** Resolves when `state` is reached; rejects with ConnectionClosedError if closing comes first. */
  whenReached(state: ApplicationConnectionState): Promise<void> {
    return this.#latches.get(state)!.promise;
  }

  /** Called only by the actor's single state writer. Settling twice is a no-op. */
  markReached(state: ApplicationConnectionState, cause?: ConnectionCloseError): void {
    this.#latches.get(state)!.resolve();
    if (state !== "closing") return;
    const error = new ConnectionClosedError(cause);
    for (const s of ["accepted", "authenticated", "services_ready", "processing_ready"] as const) {
      this.#latches.get(s)!.reject(error); // a no-op for a latch already resolved
    }
  }
}
