/**
 * Turns a model's stream of small pieces into few events (`docs/protocol.md#run-events`):
 * the first piece of each kind is published at once, so time to first token is never
 * delayed; after it, pieces that arrive within the flush interval go out as one event, so a
 * run publishes at most `1000 / flushMs + 1` events of each kind a second however fast the
 * model writes. A piece of another kind, or a new reasoning block, first flushes what waits.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";

/** A coalesced piece, ready to publish. */
export type CoalescedPiece =
  | { readonly name: "agent_delta"; readonly data: { readonly text: string } }
  | {
    readonly name: "agent_thinking";
    readonly data: { readonly text: string; readonly delta: boolean };
  };

/** Options of {@link PieceCoalescer}. */
export interface PieceCoalescerOptions {
  readonly clock: Clock;
  /** The flush interval, in ms (0: every piece is its own event). @default 40 */
  readonly flushMs?: number;
  /** Receives each coalesced piece, in order. */
  readonly publish: (piece: CoalescedPiece) => void;
}

interface Pending {
  readonly name: CoalescedPiece["name"];
  text: string;
  readonly delta: boolean;
}

/** Coalesces one run's reply and reasoning pieces. */
export class PieceCoalescer {
  #clock: Clock;
  #flushMs: number;
  #publish: (piece: CoalescedPiece) => void;
  #pending?: Pending;
  /** When the waiting piece goes out. */
  #dueAt = 0;
  /**
   * One timer at a time, left armed across flushes: when it fires it flushes a piece that is
   * due, or re-arms for one that is not yet. Arming and cancelling a timer per piece cost more
   * than the rest of the piece's way (a reasoning block per step).
   */
  #timer?: Timer;
  #timerAt = 0;
  #lastAt = new Map<CoalescedPiece["name"], number>();
  /** A reasoning block is open: its next pieces extend it (`delta: true`). */
  #thinkingOpen = false;

  constructor(options: PieceCoalescerOptions) {
    this.#clock = options.clock;
    this.#flushMs = options.flushMs ?? 40;
    this.#publish = options.publish;
  }

  /** Whether a piece waits to be published. */
  get pending(): boolean {
    return this.#pending !== undefined;
  }

  /** Adds a piece of the reply. */
  text(text: string): void {
    if (text === "") return;
    this.#thinkingOpen = false;
    this.#add("agent_delta", text, false);
  }

  /** Adds a piece of reasoning; `delta: false` starts a new block. */
  thinking(text: string, delta: boolean): void {
    if (text === "") return;
    const continues = delta && this.#thinkingOpen;
    if (!continues && this.#pending?.name === "agent_thinking") this.flush();
    this.#thinkingOpen = true;
    this.#add("agent_thinking", text, continues);
  }

  /** Publishes what waits, now. */
  flush(): void {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    this.#lastAt.set(pending.name, this.#clock.now());
    this.#publish(
      pending.name === "agent_delta"
        ? { name: "agent_delta", data: { text: pending.text } }
        : { name: "agent_thinking", data: { text: pending.text, delta: pending.delta } },
    );
  }

  /** Drops what waits and stops the timer (pieces after a cancel are dropped). */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#pending = undefined;
  }

  #add(name: CoalescedPiece["name"], text: string, delta: boolean): void {
    if (this.#pending && this.#pending.name !== name) this.flush();
    if (this.#pending) {
      this.#pending.text += text;
      return;
    }
    this.#pending = { name, text, delta };
    const last = this.#lastAt.get(name);
    const now = this.#clock.now();
    const wait = last === undefined ? 0 : last + this.#flushMs - now;
    if (wait <= 0) return this.flush();
    this.#dueAt = now + wait;
    if (this.#timer && this.#timerAt <= this.#dueAt) return; // it fires first, and re-arms
    this.#arm(now);
  }

  #arm(now: number): void {
    this.#timer?.cancel();
    this.#timerAt = this.#dueAt;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      if (!this.#pending) return;
      const at = this.#clock.now();
      if (at >= this.#dueAt) this.flush();
      else this.#arm(at);
    }, this.#dueAt - now);
  }
}
