/**
 * One user's live delivery inside a shared engine instance: turns pub/sub messages, which can
 * be lost (a subscriber reconnect, or Redis dropping a subscriber whose output buffer
 * overflowed) or repeat, into the gap-free, duplicate-free, in-order stream the
 * {@link EventListener} contract promises. Knows nothing of Redis: it is given the messages,
 * a range read to backfill from, and a clock for retries.
 *
 * - A message with `seq <= last` is a duplicate and dropped.
 * - A message with `seq > last + 1` reveals a gap: it is held, the range after `last` is read
 *   and delivered, then the held message (when still newer).
 * - After the subscriber reconnects ({@link LiveFeed.resync}) the range after `last` is read
 *   before anything newer is delivered.
 * - A backfill moves `last` to the head the read was made at, not to its last event: the seqs
 *   in between belonged to purged events, which no read returns (so they are not a gap).
 * - A message or a read in another epoch resets the tracking to that epoch (listeners get the
 *   new epoch and start over); messages of an epoch left behind are dropped.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import { Fifo } from "../_util/fifo.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { EventListener, UserEvent } from "./event_engine.ts";

/** An event as received over pub/sub. */
export interface FeedMessage {
  readonly epoch: string;
  readonly event: UserEvent;
}

/**
 * What a backfill read returns: the log's epoch and head, and the events after `after` up to
 * the head (purged ones left out).
 */
export interface FeedRange {
  readonly epoch: string;
  readonly seq: number;
  readonly events: readonly UserEvent[];
}

/** Options of {@link LiveFeed}. */
export interface LiveFeedOptions {
  /** For log lines. */
  readonly userId: string;
  /** Reads the user's events after `after` (the engine's range read). */
  readonly readAfter: (after: number) => Promise<FeedRange>;
  /** Runs the retry timer of a failed backfill. */
  readonly clock: Clock;
  readonly log: Logger;
  /** Messages kept while a backfill runs; past it they are dropped and read back instead. */
  readonly maxQueued?: number;
}

/** A listener's registration; `active` turns false when it leaves. */
export interface FeedSubscriber {
  readonly listener: EventListener;
  active: boolean;
}

type FeedState = "starting" | "live" | "closed";

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 2_000;

/** Ordered, deduplicated, backfilled delivery of one user's events to local listeners. */
export class LiveFeed {
  #o: LiveFeedOptions;
  #state: FeedState = "starting";
  #subscribers = new Set<FeedSubscriber>();
  #epoch?: string;
  #lastSeq = 0;
  #retired = new Set<string>();
  #queue = new Fifo<FeedMessage>();
  /** The message that revealed a gap, delivered after the backfill. */
  #held?: FeedMessage;
  #needsSync = false;
  #pumping = false;
  #retryMs = FIRST_RETRY_MS;
  #retryTimer?: Timer;
  #failing = false;
  /** Callers of {@link whenDelivered}, by the seq they wait for. */
  #waiters: { readonly epoch: string; readonly seq: number; readonly resolve: () => void }[] = [];

  constructor(options: LiveFeedOptions) {
    this.#o = options;
  }

  /** Number of local listeners. */
  get listenerCount(): number {
    return this.#subscribers.size;
  }

  /** The epoch and seq of the last event delivered (or of the starting point). */
  get position(): { readonly epoch?: string; readonly seq: number } {
    return { epoch: this.#epoch, seq: this.#lastSeq };
  }

  /**
   * Goes live from the log's head read after the subscription was confirmed: messages up to
   * `seq` are older than any subscriber of this feed and dropped; later ones are delivered.
   */
  start(head: { readonly epoch: string; readonly seq: number }): void {
    if (this.#state !== "starting") return;
    this.#epoch = head.epoch;
    this.#lastSeq = head.seq;
    this.#state = "live";
    void this.#pump();
  }

  /** Adds a listener; it gets every event this feed delivers from now on. */
  add(listener: EventListener): FeedSubscriber {
    const subscriber: FeedSubscriber = { listener, active: true };
    this.#subscribers.add(subscriber);
    return subscriber;
  }

  /** Removes a listener; returns false when it was already gone. */
  remove(subscriber: FeedSubscriber): boolean {
    if (!subscriber.active) return false;
    subscriber.active = false;
    return this.#subscribers.delete(subscriber);
  }

  /** Takes one pub/sub message. */
  receive(message: FeedMessage): void {
    if (this.#state === "closed") return;
    if (this.#queue.length >= (this.#o.maxQueued ?? 10_000)) {
      // Too far behind: drop what is queued and read it back from the log instead.
      this.#queue.clear();
      this.#held = undefined;
      this.#needsSync = true;
    }
    this.#queue.push(message);
    void this.#pump();
  }

  /** The subscription was re-established: messages may have been lost, read them back first. */
  resync(): void {
    if (this.#state === "closed") return;
    this.#needsSync = true;
    void this.#pump();
  }

  /**
   * Resolves once the events up to `seq` of `epoch` were delivered, the feed moved to another
   * epoch, or it closed (the engine holds a user's publishing back while its own feed lags).
   */
  whenDelivered(epoch: string, seq: number): Promise<void> {
    if (this.#state === "closed" || this.#epoch !== epoch || this.#lastSeq >= seq) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push({ epoch, seq, resolve }));
  }

  /** Stops delivering and cancels a pending retry. */
  close(): void {
    this.#state = "closed";
    this.#wake();
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    this.#queue.clear();
    this.#held = undefined;
    for (const subscriber of this.#subscribers) subscriber.active = false;
    this.#subscribers.clear();
  }

  async #pump(): Promise<void> {
    if (this.#pumping || this.#state !== "live" || this.#retryTimer) return;
    this.#pumping = true;
    try {
      while (this.#state === "live") {
        if (this.#needsSync) {
          if (!(await this.#backfill())) return this.#scheduleRetry();
          if (this.#needsSync) continue; // another read is due first (a reset, or a new loss)
          const held = this.#held;
          this.#held = undefined;
          if (held) this.#accept(held, true);
          continue;
        }
        const message = this.#queue.shift();
        if (!message) return;
        this.#accept(message, false);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #accept(message: FeedMessage, gapAllowed: boolean): void {
    const { epoch, event } = message;
    if (this.#retired.has(epoch)) return; // from a log that was reset since
    if (epoch !== this.#epoch) this.#switchEpoch(epoch, event.seq - 1);
    if (event.seq <= this.#lastSeq) return; // duplicate
    if (event.seq > this.#lastSeq + 1 && !gapAllowed) {
      this.#held = message;
      this.#needsSync = true;
      return;
    }
    this.#emit(event, epoch);
  }

  /** Reads and delivers what follows the last delivered event; false when the read failed. */
  async #backfill(): Promise<boolean> {
    // Cleared before the read: a loss noticed while it runs asks for another one.
    this.#needsSync = false;
    let range: FeedRange;
    try {
      range = await this.#o.readAfter(this.#lastSeq);
    } catch (error) {
      this.#needsSync = true;
      if (!this.#failing) {
        this.#failing = true;
        this.#o.log.warn("live feed backfill failed; retrying", {
          userId: this.#o.userId,
          error: errorMessage(error),
        });
      }
      return false;
    }
    this.#failing = false;
    this.#retryMs = FIRST_RETRY_MS;
    if (this.#state !== "live") return true;
    if (range.epoch !== this.#epoch) {
      // The log was reset: deliver the new one from its oldest retained event.
      this.#switchEpoch(range.epoch, 0);
      this.#needsSync = true;
      return true;
    }
    for (const event of range.events) {
      if (this.#state !== "live" || this.#epoch !== range.epoch) break;
      if (event.seq > this.#lastSeq) this.#emit(event, range.epoch);
    }
    // Everything up to the head was read: what is missing below it was purged.
    if (this.#state === "live" && this.#epoch === range.epoch) {
      this.#lastSeq = Math.max(this.#lastSeq, range.seq);
      this.#wake();
    }
    return true;
  }

  #switchEpoch(epoch: string, lastSeq: number): void {
    if (this.#epoch !== undefined) this.#retired.add(this.#epoch);
    this.#epoch = epoch;
    this.#lastSeq = lastSeq;
    this.#wake();
  }

  /** Resolves the {@link whenDelivered} callers whose wait is over. */
  #wake(): void {
    if (this.#waiters.length === 0) return;
    const open = this.#state !== "closed";
    this.#waiters = this.#waiters.filter((waiter) => {
      if (open && waiter.epoch === this.#epoch && waiter.seq > this.#lastSeq) return true;
      waiter.resolve();
      return false;
    });
  }

  #emit(event: UserEvent, epoch: string): void {
    this.#lastSeq = event.seq;
    if (this.#waiters.length > 0) this.#wake();
    for (const subscriber of [...this.#subscribers]) {
      if (!subscriber.active) continue;
      try {
        subscriber.listener(event, epoch);
      } catch (error) {
        this.#o.log.error("event listener failed", {
          userId: this.#o.userId,
          seq: event.seq,
          error: errorMessage(error),
        });
      }
    }
  }

  #scheduleRetry(): void {
    if (this.#state !== "live") return;
    const wait = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, MAX_RETRY_MS);
    this.#retryTimer = this.#o.clock.setTimer(() => {
      this.#retryTimer = undefined;
      void this.#pump();
    }, wait);
  }
}
