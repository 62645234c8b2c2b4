/**
 * Builds a run's events from the catalogue (`src/protocol/events.ts`), so a name and its data
 * are checked together by the compiler, and stamps them with a display time.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { NewEvent } from "../bus/mod.ts";
import type { EventData, EventName } from "../protocol/mod.ts";

/** An event's name with its data, as the catalogue pairs them. */
export type NamedEvent<N extends EventName = EventName> = {
  [K in N]: { readonly name: K; readonly data: EventData[K] };
}[N];

/** What an event needs to know about its run. */
export interface RunRef {
  readonly id: string;
  readonly userId: string;
  readonly threadId: string;
}

/**
 * Stamps events with an ISO 8601 time. Runs stamp many events per millisecond, so each
 * millisecond is formatted once.
 */
export class EventStamper {
  #clock: Clock;
  #at = Number.NaN;
  #text = "";

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The current time as ISO 8601 UTC. */
  now(): string {
    const now = this.#clock.now();
    if (now !== this.#at) {
      this.#at = now;
      this.#text = new Date(now).toISOString();
    }
    return this.#text;
  }

  /**
   * Builds one event of `run`.
   *
   * @param run The run it belongs to.
   * @param event Its name and data, as the catalogue declares them.
   */
  event(run: Pick<RunRef, "id" | "threadId">, event: NamedEvent): NewEvent {
    return {
      threadId: run.threadId,
      runId: run.id,
      name: event.name,
      data: event.data as unknown as Record<string, unknown>,
      ts: this.now(),
    };
  }
}
