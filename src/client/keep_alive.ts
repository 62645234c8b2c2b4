/**
 * The client's keep-alive: a `ping` every so often while ready, and a deadline for its `pong`.
 * An unanswered ping means a dead connection, dropped at once rather than when TCP notices.
 * The same ping marks the end of a replay: the server answers frames in order, so its `pong`
 * comes after every event it sent before (`docs/protocol.md#resume`).
 *
 * @module
 */
import type { TimerGroup } from "./timer_group.ts";
import type { TimerHandle } from "./timers.ts";

/** Options of {@link KeepAlive}. */
export interface KeepAliveOptions {
  /** Ping this often while ready (0: never on its own). */
  readonly intervalMs: number;
  /** A ping not answered within this long calls `dead`. */
  readonly timeoutMs: number;
  readonly timers: TimerGroup;
  /** Sends `{"type":"ping"}`; `false` when it could not be sent. */
  readonly sendPing: () => boolean;
  /** No pong in time. */
  readonly dead: () => void;
}

/** Pings and waits for pongs; one per connection, started at `ready`. */
export class KeepAlive {
  #o: KeepAliveOptions;
  #pingTimer?: TimerHandle;
  #pongTimer?: TimerHandle;

  constructor(options: KeepAliveOptions) {
    this.#o = options;
  }

  /** Whether a ping waits for its pong. */
  get awaitingPong(): boolean {
    return this.#pongTimer !== undefined;
  }

  /** Starts the periodic pings (the connection is ready). */
  start(): void {
    this.#o.timers.clear(this.#pingTimer);
    this.#pingTimer = undefined;
    if (this.#o.intervalMs <= 0) return;
    this.#pingTimer = this.#o.timers.set(() => {
      this.#pingTimer = undefined;
      this.ping();
      this.start();
    }, this.#o.intervalMs);
  }

  /** Sends a ping now and arms the pong deadline (one deadline for pings not yet answered). */
  ping(): void {
    if (!this.#o.sendPing() || this.#pongTimer !== undefined) return;
    this.#pongTimer = this.#o.timers.set(() => {
      this.#pongTimer = undefined;
      this.#o.dead();
    }, this.#o.timeoutMs);
  }

  /** A pong arrived. */
  pong(): void {
    this.#o.timers.clear(this.#pongTimer);
    this.#pongTimer = undefined;
  }

  /** The connection is gone. */
  stop(): void {
    this.#o.timers.clear(this.#pingTimer);
    this.#o.timers.clear(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = undefined;
  }
}
