/**
 * Where one connection stands in its user's event log: the log's epoch and the highest seq
 * delivered. Both delivery paths use it — the reads (catch-up at `ready`, backfill of a gap)
 * and the live events — so the seq rules live in one place (`docs/protocol.md#resume`):
 *
 * - an event at or below the delivered seq is a duplicate, dropped;
 * - an event of another epoch means the log was reset (seqs may repeat): close 1013;
 * - an event past the next seq means events were missed: read the log after the cursor;
 * - a read may have holes (events of a deleted thread are filtered from every read), so a
 *   complete read moves the cursor to the head it was read at, not to its last event.
 *
 * @module
 */
import type { UserEvent } from "../bus/mod.ts";

/** What to do with one live event. */
export type LiveVerdict =
  /** The next event in seq: send it, then {@link EventCursor.delivered}. */
  | "deliver"
  /** Already delivered (by a read, or twice live): drop it. */
  | "duplicate"
  /** Events before it were missed: read the log after {@link EventCursor.seq} first. */
  | "gap"
  /** The log was reset since the connection started: it must start over (close 1013). */
  | "reset";

/** A read of the log: the catch-up at `ready`, or a range read that fills a gap. */
export interface LogRead {
  readonly epoch: string;
  /** The head of the log when it was read. */
  readonly seq: number;
  /** Events in seq order; holes allowed. */
  readonly events: readonly UserEvent[];
}

/** The outcome of applying a range read. */
export type RangeOutcome =
  | { readonly ok: true; readonly events: readonly UserEvent[] }
  | { readonly ok: false; readonly reason: "reset" | "incomplete" };

/** One connection's position in its user's event log; {@link #advance} is its only writer. */
export class EventCursor {
  #epoch = "";
  #seq = 0;

  /** The epoch of the log the connection started on ("" before the catch-up). */
  get epoch(): string {
    return this.#epoch;
  }

  /** The highest seq delivered (or skipped as a hole of a complete read). */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Starts at the handshake's catch-up read.
   *
   * @returns The catch-up events to send, in order; the cursor is then at `read.seq`.
   */
  begin(read: LogRead): readonly UserEvent[] {
    this.#epoch = read.epoch;
    return this.#take(read);
  }

  /** Classifies a live event of `epoch` against the cursor. */
  classify(event: UserEvent, epoch: string): LiveVerdict {
    if (epoch !== this.#epoch) return "reset";
    if (event.seq <= this.#seq) return "duplicate";
    return event.seq === this.#seq + 1 ? "deliver" : "gap";
  }

  /** Records a live event as sent. */
  delivered(seq: number): void {
    this.#advance(seq);
  }

  /**
   * Applies a range read made to fill a gap (`readAfter(cursor.seq)`).
   *
   * @returns The events to send (those past the cursor, in order; the cursor is then at
   *   `range.seq`), or why the gap cannot be filled: the log was reset, or events right after
   *   the cursor are no longer retained.
   */
  applyRange(range: LogRead & { readonly complete: boolean }): RangeOutcome {
    if (range.epoch !== this.#epoch) return { ok: false, reason: "reset" };
    if (!range.complete) return { ok: false, reason: "incomplete" };
    return { ok: true, events: this.#take(range) };
  }

  /** The events of `read` past the cursor, up to its head; moves the cursor to the head. */
  #take(read: LogRead): readonly UserEvent[] {
    const events: UserEvent[] = [];
    let last = this.#seq;
    for (const event of read.events) {
      if (event.seq <= last || event.seq > read.seq) continue;
      events.push(event);
      last = event.seq;
    }
    this.#advance(read.seq);
    return events;
  }

  /** The only writer: the cursor never moves back. */
  #advance(seq: number): void {
    if (seq > this.#seq) this.#seq = seq;
  }
}
