/**
 * One connection's mailbox: inbound frames and live events wait here, in arrival order, to be
 * handled by the actor's single loop. Both kinds are bounded apart: frames by a limit the
 * caller gives (overflow is a close), events by a limit past which they are dropped and one
 * `gap` marker is queued instead (the actor then fills the hole from the log).
 *
 * @module
 */
import { Fifo } from "../_util/fifo.ts";
import type { UserEvent } from "../bus/mod.ts";

/** What waits in a mailbox. */
export type MailItem =
  | { readonly kind: "frame"; readonly data: string }
  | { readonly kind: "binary" }
  | { readonly kind: "rate_limited"; readonly ref?: string }
  | { readonly kind: "event"; readonly event: UserEvent; readonly epoch: string }
  | { readonly kind: "gap" };

/** A bounded FIFO of {@link MailItem}s with one loop claiming it at a time. */
export class Mailbox {
  #items = new Fifo<MailItem>();
  #frames = 0;
  #events = 0;
  #gap: "none" | "queued" = "none";
  #loop: "idle" | "running" = "idle";

  /** Items waiting. */
  get length(): number {
    return this.#items.length;
  }

  /**
   * Queues a frame (or what stands for one: a binary frame, a rate-limit answer).
   *
   * @returns false, queueing nothing, when `limit` frames already wait.
   */
  pushFrame(item: Exclude<MailItem, { kind: "event" | "gap" }>, limit: number): boolean {
    if (this.#frames >= limit) return false;
    this.#frames++;
    this.#items.push(item);
    return true;
  }

  /** Queues a live event; past `limit` events, queues one `gap` marker instead. */
  pushEvent(event: UserEvent, epoch: string, limit: number): void {
    if (this.#events < limit) {
      this.#events++;
      this.#items.push({ kind: "event", event, epoch });
    } else if (this.#gap === "none") {
      this.#gap = "queued";
      this.#items.push({ kind: "gap" });
    }
  }

  /** Takes the oldest item. */
  shift(): MailItem | undefined {
    const item = this.#items.shift();
    if (item === undefined) return undefined;
    if (item.kind === "event") this.#events--;
    else if (item.kind === "gap") this.#gap = "none";
    else this.#frames--;
    // An idle connection keeps an empty queue, not the backing store of its last burst.
    if (this.#items.length === 0) this.#items.clear();
    return item;
  }

  /** Drops everything waiting. */
  clear(): void {
    this.#items.clear();
    this.#frames = 0;
    this.#events = 0;
    this.#gap = "none";
  }

  /** True while a loop holds the mailbox. */
  get running(): boolean {
    return this.#loop === "running";
  }

  /** Claims the mailbox for one loop; false when another loop holds it. */
  claim(): boolean {
    if (this.#loop === "running") return false;
    this.#loop = "running";
    return true;
  }

  /** Gives the mailbox back. */
  release(): void {
    this.#loop = "idle";
  }
}
