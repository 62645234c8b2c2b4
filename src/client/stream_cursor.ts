/**
 * Where the client stands in the user's event stream: the epoch of the log it follows, the seq
 * of the last event delivered (the resume position), and whether the replay sent with `ready`
 * is still arriving. It is the one place that decides whether an event is new, so each event
 * is delivered once whatever the reconnects (`docs/protocol.md#resume`).
 *
 * @module
 */
import type { ReadyFrame, ResumePosition } from "../protocol/mod.ts";

/** What a `ready` changed in the stream position. */
export interface CursorReady {
  /**
   * Set when the server could not resume a stream the client was following
   * (`resumed:false` after an earlier `ready`): what the client shows must be reloaded.
   */
  readonly reset?: {
    readonly previousEpoch: string;
    /** The log itself was replaced (its seqs start over). */
    readonly epochChanged: boolean;
  };
  /**
   * The replay of the active runs follows `ready` and may end below `ready.seq` (a run's
   * events are not all of the user's). The client sends a `ping`: the server answers in order,
   * so the `pong` comes after the last replayed event, and {@link StreamCursor.pong} ends the
   * replay.
   */
  readonly awaitReplayEnd: boolean;
}

/** The client's position in the user's event stream; the only writer of it. */
export class StreamCursor {
  #epoch?: string;
  #lastSeq = 0;
  /** `ready.seq` of a connection whose replay is still arriving. */
  #replayUpTo?: number;

  /** The epoch of the log followed, once a `ready` named it. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** The seq of the last event delivered (events up to it are never delivered again). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Whether the replay sent with the last `ready` is still arriving. */
  get replaying(): boolean {
    return this.#replayUpTo !== undefined;
  }

  /** The `resume` of the next `hello`: none before the first `ready`. */
  resumePosition(): ResumePosition | undefined {
    return this.#epoch === undefined ? undefined : { epoch: this.#epoch, after: this.#lastSeq };
  }

  /** Takes a connection's `ready`. */
  ready(frame: ReadyFrame): CursorReady {
    const previousEpoch = this.#epoch;
    const epochChanged = previousEpoch !== undefined && previousEpoch !== frame.epoch;
    this.#epoch = frame.epoch;
    if (frame.resumed) {
      // Every event after `after` follows, in order: the position holds as it is.
      this.#replayUpTo = undefined;
      return { awaitReplayEnd: false };
    }
    // A new log (or a rewound one) starts its seqs over: what we hold no longer compares.
    if (epochChanged || frame.seq < this.#lastSeq) this.#lastSeq = 0;
    // Without active runs nothing is replayed: the position is the head at once.
    if (frame.activeRuns.length === 0) {
      this.#replayUpTo = undefined;
      this.#lastSeq = Math.max(this.#lastSeq, frame.seq);
    } else {
      this.#replayUpTo = frame.seq;
    }
    const reset = previousEpoch === undefined ? undefined : { previousEpoch, epochChanged };
    return { reset, awaitReplayEnd: this.#replayUpTo !== undefined };
  }

  /**
   * Decides whether an event is new, and moves the position past it when it is.
   *
   * @returns `true` when the event must be delivered; `false` for one delivered already.
   */
  accept(event: { readonly seq: number }): boolean {
    // A live event (past ready.seq) can only follow the whole replay.
    if (this.#replayUpTo !== undefined && event.seq > this.#replayUpTo) this.#endReplay();
    if (event.seq <= this.#lastSeq) return false;
    this.#lastSeq = event.seq;
    return true;
  }

  /** A `pong` arrived: every frame sent before it, the replay included, has arrived. */
  pong(): void {
    if (this.#replayUpTo !== undefined) this.#endReplay();
  }

  #endReplay(): void {
    // The events between the replay's last and ready.seq belong to runs that ended: they are
    // not replayed, and the position moves past them.
    this.#lastSeq = Math.max(this.#lastSeq, this.#replayUpTo!);
    this.#replayUpTo = undefined;
  }
}
