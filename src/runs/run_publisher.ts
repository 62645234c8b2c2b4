/**
 * Publishes one run's events, in order: pieces of the reply through a {@link PieceCoalescer},
 * every other event after the pieces that wait (a piece waiting to be flushed is published
 * before any other event of its run). Publishing does not block the agent: events queue and a
 * single pump sends them, all that queued while the previous call was out in one
 * `publishMany` (one round trip to a shared engine however fast the agent emits). When the
 * engine fails, or refuses because another instance already ended the run, the pump stops and
 * keeps what it could not send, for the run's ending to publish (or drop). A call that failed
 * may still have been carried out (its answer was lost): the publisher then says so
 * (`uncertain`), with the last seq it knows the run holds, and the ending reads the log before
 * it publishes again, so no event goes out twice.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { EventEngine, NewEvent, PublishResult } from "../bus/mod.ts";
import { PieceCoalescer } from "./piece_coalescer.ts";
import type { EventStamper, NamedEvent, RunRef } from "./run_events.ts";

/** How many events a run publishes before it yields to the event loop. */
const YIELD_EVERY_EVENTS = 32;
/** At most this many events go in one `publishMany` call (a script holds Redis while it runs). */
const MAX_BATCH_EVENTS = 128;
/** Queued events at which the agent is made to wait: two batches, one out and one ready. */
const HIGH_WATER_EVENTS = 2 * MAX_BATCH_EVENTS;

/** Options of {@link RunPublisher}. */
export interface RunPublisherOptions {
  readonly engine: Pick<EventEngine, "publishMany">;
  readonly clock: Clock;
  readonly stamper: EventStamper;
  /** Pieces within this many ms go out as one event. @default 40 */
  readonly flushMs?: number;
  /** Told of each event once the engine holds it. */
  readonly onPublished?: (result: Extract<PublishResult, { published: true }>) => void;
  /** The seq of the run's last event already in the log (its `agent_started`). @default 0 */
  readonly confirmedSeq?: number;
}

/** What a closed publisher leaves for the run's ending. */
export interface PublisherLeftovers {
  /** Events not known to be published, in order. */
  readonly events: NewEvent[];
  /** The seq of the run's last event the engine confirmed. */
  readonly confirmedSeq: number;
  /** The last call failed without an answer: its events may be in the log already. */
  readonly uncertain: boolean;
}

/** What stopped a publisher. */
export type PublisherStop =
  | { readonly kind: "failed"; readonly error: unknown }
  | { readonly kind: "ended_elsewhere" };

/** The event queue of one run. */
export class RunPublisher {
  #run: RunRef;
  #o: RunPublisherOptions;
  #coalescer: PieceCoalescer;
  #queue: NewEvent[] = [];
  #pumping?: Promise<void>;
  #stopped?: PublisherStop;
  #published = 0;
  #confirmedSeq: number;
  #reply = "";
  /** Settled after each call the pump makes, for {@link whenRoom}. */
  #progress = Promise.withResolvers<void>();

  constructor(run: RunRef, options: RunPublisherOptions) {
    this.#run = run;
    this.#o = options;
    this.#confirmedSeq = options.confirmedSeq ?? 0;
    this.#coalescer = new PieceCoalescer({
      clock: options.clock,
      flushMs: options.flushMs,
      publish: (piece) => {
        if (piece.name === "agent_delta") this.#reply += piece.data.text;
        this.#enqueue(options.stamper.event(run, piece));
      },
    });
  }

  /**
   * The reply so far: the text of every `agent_delta` queued (published, or handed to the
   * run's ending). A piece that still waits joins it at {@link settle}.
   */
  get reply(): string {
    return this.#reply;
  }

  /** Why the publisher stopped, once it did. */
  get stopped(): PublisherStop | undefined {
    return this.#stopped;
  }

  /** True while so many events wait that the agent should wait too ({@link whenRoom}). */
  get full(): boolean {
    return this.#queue.length >= HIGH_WATER_EVENTS && !this.#stopped;
  }

  /** Resolves once fewer events wait than make it {@link full}, or the publisher stopped. */
  async whenRoom(): Promise<void> {
    while (this.full && this.#pumping) await this.#progress.promise;
  }

  /** Adds a piece of the reply. */
  text(text: string): void {
    this.#coalescer.text(text);
  }

  /** Adds a piece of reasoning; `delta: false` starts a block. */
  thinking(text: string, delta: boolean): void {
    this.#coalescer.thinking(text, delta);
  }

  /** Queues an event, after any piece that waits. */
  emit(event: NamedEvent): void {
    this.#coalescer.flush();
    this.#enqueue(this.#o.stamper.event(this.#run, event));
  }

  /**
   * Flushes the waiting piece and resolves once everything queued was published, or the
   * publisher stopped.
   */
  async settle(): Promise<void> {
    this.#coalescer.flush();
    while (this.#pumping) await this.#pumping;
  }

  /**
   * Stops taking pieces (those that arrive after a cancel are dropped), flushes the one that
   * waits, and resolves with what could not be published, in order.
   */
  async close(): Promise<PublisherLeftovers> {
    await this.settle();
    this.#coalescer.close();
    return {
      events: this.#stopped?.kind === "ended_elsewhere" ? [] : this.#queue.splice(0),
      confirmedSeq: this.#confirmedSeq,
      uncertain: this.#stopped?.kind === "failed",
    };
  }

  #enqueue(event: NewEvent): void {
    this.#queue.push(event);
    if (!this.#pumping && !this.#stopped) {
      this.#pumping = this.#pump().finally(() => {
        this.#pumping = undefined;
      });
    }
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0 && !this.#stopped) {
      const batch = this.#queue.slice(0, MAX_BATCH_EVENTS);
      let results: PublishResult[];
      try {
        results = await this.#o.engine.publishMany(this.#run.userId, batch);
      } catch (error) {
        this.#stopped = { kind: "failed", error };
        return;
      } finally {
        this.#progress.resolve();
        this.#progress = Promise.withResolvers();
      }
      this.#queue.splice(0, batch.length);
      for (const result of results) {
        if (!result.published) {
          // Another instance ended the run: nothing after its end may be published.
          this.#stopped = { kind: "ended_elsewhere" };
          this.#queue.length = 0;
          return;
        }
        this.#confirmedSeq = result.event.seq;
        this.#o.onPublished?.(result);
      }
      // An agent that emits as fast as it can, over an in-process engine, never leaves the
      // microtask queue: let sockets, timers and other runs have their turn now and then.
      const before = this.#published;
      this.#published += results.length;
      if (
        Math.floor(before / YIELD_EVERY_EVENTS) !== Math.floor(this.#published / YIELD_EVERY_EVENTS)
      ) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
  }
}
