/**
 * The narrow view of a WebSocket that the connection core gets: `ws/upgrade.ts` adapts Deno's
 * socket to it, and unit tests pass a controllable fake.
 *
 * @module
 */

/** WebSocket `readyState` values (the WHATWG numbers). */
export const SocketReadyState = {
  Connecting: 0,
  Open: 1,
  Closing: 2,
  Closed: 3,
} as const;

/** What the actor may do with a socket. Only the actor calls `send` or `close`. */
export interface SocketPort {
  /** One of {@link SocketReadyState}. */
  readonly readyState: number;
  /** Bytes queued by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /** Sends one text frame; only called when `readyState` is OPEN. */
  send(data: string): void;
  /** Starts the closing handshake. */
  close(code: number, reason: string): void;
}
