/**
 * Counts every timing violation the connection core catches, by kind, and tells the caller
 * whether a send may go ahead. A violation is a bug in the server (never the client's doing):
 * it is refused, counted on `/metrics` and logged, and never turned into a close 1011.
 *
 * @module
 */
import type { ApplicationConnectionState } from "./application_connection_state.ts";
import { SocketReadyState } from "./socket_port.ts";

/**
 * The kinds of violation, as shown in the `kind` label on `/metrics`:
 * - `send_not_open`: a frame sent, or a close started, on a socket not open yet (the client
 *   would never see it, or its close code);
 * - `event_before_ready` / `frame_before_ready`: a run event, or another frame, sent before
 *   `ready`;
 * - `frame_after_close`: a frame sent after the server decided to close (an `await` that came
 *   back without checking that the connection is still live);
 * - `invalid_transition`: a lifecycle move the transition table refuses.
 *
 * Inbound frames are not checked: the actor's mailbox is drained only while the connection is
 * live and is emptied when it starts closing, so a frame handled after the close is impossible
 * by construction, and the peer's frames that cross our close on the wire are its right.
 */
export const RACE_KINDS = [
  "send_not_open",
  "event_before_ready",
  "frame_before_ready",
  "frame_after_close",
  "invalid_transition",
] as const;

/** One of {@link RACE_KINDS}. */
export type RaceKind = typeof RACE_KINDS[number];

/** What to do with an outbound frame. */
export type SendVerdict =
  /** The socket is open and the frame is in order: send it. */
  | "send"
  /** The peer closed while the send was under way: drop it quietly (not a violation). */
  | "drop"
  /** A violation was recorded: do not send. */
  | "refuse";

/** Receives a violation as it is recorded (for logging). */
export type ViolationListener = (kind: RaceKind, detail: string) => void;

const KIND_INDEX: Record<RaceKind, number> = Object.fromEntries(
  RACE_KINDS.map((kind, i) => [kind, i]),
) as Record<RaceKind, number>;

/** Counts race violations; one instance is shared by every connection of a process. */
export class RaceConditionDetector {
  #counts = new Float64Array(RACE_KINDS.length);
  #listener?: ViolationListener;

  constructor(options: { onViolation?: ViolationListener } = {}) {
    this.#listener = options.onViolation;
  }

  /**
   * Checks an outbound frame. `readySent` is whether `ready` already went out on this socket;
   * `isEvent` whether the frame is a run event. Cheap: a few comparisons, no allocation.
   *
   * @param state The connection's state when the send is attempted.
   * @param readyState The socket's `readyState` at that moment.
   * @param frame What is being sent.
   * @returns Whether to send, drop quietly, or refuse (a violation was counted).
   */
  checkSend(
    state: ApplicationConnectionState,
    readyState: number,
    frame: { readonly isReady: boolean; readonly isEvent: boolean; readonly readySent: boolean },
  ): SendVerdict {
    if (state === "closing" || state === "closed") {
      // The server decided to close and still tried to send.
      return this.#violation("frame_after_close", `send in state ${state}`);
    }
    if (readyState !== SocketReadyState.Open) {
      // A live connection whose socket is closing or closed: the peer (or the network) closed
      // it while this send was under way. That is the peer's right, not a server race.
      if (readyState === SocketReadyState.Closing || readyState === SocketReadyState.Closed) {
        return "drop";
      }
      return this.#violation("send_not_open", `send with readyState ${readyState} in ${state}`);
    }
    if (!frame.isReady && !frame.readySent) {
      return this.#violation(
        frame.isEvent ? "event_before_ready" : "frame_before_ready",
        `send before ready in ${state}`,
      );
    }
    return "send";
  }

  /**
   * Checks a close the server is about to start: closing a socket that is not open yet loses
   * the close code (the client never sees it), so that is a violation.
   *
   * @returns Whether `close` may be called now.
   */
  checkClose(readyState: number): boolean {
    if (readyState === SocketReadyState.Open) return true;
    if (readyState === SocketReadyState.Connecting) {
      this.#violation("send_not_open", "close before open");
    }
    return false;
  }

  /** Records a state transition the table refuses. */
  recordInvalidTransition(from: ApplicationConnectionState, to: ApplicationConnectionState): void {
    this.#violation("invalid_transition", `${from} -> ${to}`);
  }

  /** The count of one kind since start. */
  count(kind: RaceKind): number {
    return this.#counts[KIND_INDEX[kind]];
  }

  /** Every kind with its count, for `/metrics`. */
  counts(): [RaceKind, number][] {
    return RACE_KINDS.map((kind, i) => [kind, this.#counts[i]]);
  }

  /** The sum over every kind. */
  total(): number {
    let sum = 0;
    for (const n of this.#counts) sum += n;
    return sum;
  }

  #violation(kind: RaceKind, detail: string): "refuse" {
    this.#counts[KIND_INDEX[kind]]++;
    this.#listener?.(kind, detail);
    return "refuse";
  }
}
