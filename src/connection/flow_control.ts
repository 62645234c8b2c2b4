/**
 * Flow control of one connection's socket: once more than a high-water mark of bytes is
 * buffered, the actor stops sending and waits for the socket to drain below half of it. A
 * socket that does not drain in time belongs to a client that stopped reading.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";

/** Options of {@link FlowControl}. */
export interface FlowControlOptions {
  readonly clock: Clock;
  /** Bytes buffered above which sending stops. */
  readonly highWaterBytes: number;
  /** How long a congested socket may take to drain. */
  readonly drainTimeoutMs: number;
  /** How often a congested socket's buffer is looked at. @default 10 */
  readonly pollMs?: number;
}

/** What waiting for a congested socket came to. */
export type DrainOutcome =
  /** Below half the high-water mark: sending may go on. */
  | "drained"
  /** The connection stopped being live while waiting. */
  | "stopped"
  /** The socket did not drain in time: a slow consumer. */
  | "timed_out";

/** The congestion state of one socket: `flowing` or `congested`; one writer each way. */
export class FlowControl {
  #options: FlowControlOptions;
  #state: "flowing" | "congested" = "flowing";

  constructor(options: FlowControlOptions) {
    this.#options = options;
  }

  /** True once a send left more than the high-water mark buffered, until it drains. */
  get congested(): boolean {
    return this.#state === "congested";
  }

  /** Records what a send left buffered. */
  sent(bufferedAmount: number): void {
    if (bufferedAmount > this.#options.highWaterBytes) this.#state = "congested";
  }

  /**
   * Waits, polling on the clock, until `buffered()` is below half the high-water mark.
   *
   * @param buffered Reads the socket's `bufferedAmount`.
   * @param live Whether the connection is still live (checked at every poll).
   */
  async drained(buffered: () => number, live: () => boolean): Promise<DrainOutcome> {
    const { clock, highWaterBytes, drainTimeoutMs, pollMs = 10 } = this.#options;
    const deadline = clock.now() + drainTimeoutMs;
    while (buffered() > highWaterBytes / 2) {
      if (!live()) return "stopped";
      if (clock.now() >= deadline) return "timed_out";
      await delay(clock, pollMs);
    }
    this.#state = "flowing";
    return live() ? "drained" : "stopped";
  }
}
