/**
 * When the server may send its close frame. Deno 2.9.6 tears a server socket down as soon as a
 * data frame arrives after `close()` was called (its event loop closes the resource on any
 * frame read in the `CLOSING` state); with more of the peer's frames still unread, the kernel
 * answers them with a TCP reset, and the reset makes the peer drop the close frame it had not
 * read yet: the client sees 1006 instead of the code. So a close decided while the peer is
 * still sending waits, frames read and discarded meanwhile, until the peer has been quiet for
 * a moment, or at most a bound (`docs/protocol.md#close-codes`).
 *
 * @module
 */

/** Options of {@link CloseLinger}. */
export interface CloseLingerOptions {
  /** How long the peer must have sent nothing before the close frame goes out; 0 disables. */
  readonly quietMs: number;
  /** The longest a close waits for quiet, from the decision. */
  readonly maxMs: number;
}

/** Tracks the peer's last frame and says how long a close must still wait. */
export class CloseLinger {
  #options: CloseLingerOptions;
  #lastFrameAt = Number.NEGATIVE_INFINITY;

  constructor(options: CloseLingerOptions) {
    this.#options = options;
  }

  /** Records that a frame arrived at `now` (ms). */
  frameArrived(now: number): void {
    this.#lastFrameAt = now;
  }

  /**
   * How long to wait before sending the close frame.
   *
   * @param now The current time in ms.
   * @param decidedAt When the close was decided.
   * @returns 0 when the close may go out now.
   */
  waitMs(now: number, decidedAt: number): number {
    const { quietMs, maxMs } = this.#options;
    if (quietMs <= 0) return 0;
    const quietAt = this.#lastFrameAt + quietMs;
    const deadline = decidedAt + maxMs;
    return Math.max(0, Math.min(quietAt, deadline) - now);
  }
}
