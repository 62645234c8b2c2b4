/**
 * The seam between the client and the network: the client opens its sockets through a
 * {@link SocketFactory}, so tests hand it sockets they drive by hand and no test needs a
 * network. The default opens a standard `WebSocket` (browsers and Deno alike).
 *
 * @module
 */

/** What a socket tells the client. The factory calls these; the client never reads events. */
export interface SocketHandlers {
  /** The socket opened. */
  open(): void;
  /** A text frame arrived (binary frames are not part of the protocol and are dropped). */
  message(data: string): void;
  /**
   * The socket closed. A connection that failed or was cut reports 1006 (browsers) or a code
   * below 1000 (Deno reports 0); the client reads both as 1006.
   */
  close(code: number, reason: string): void;
}

/** One socket, as far as the client uses it. */
export interface ClientSocket {
  /** Whether frames can be sent now (the socket is open and not closing). */
  readonly isOpen: boolean;
  /** Sends one text frame. */
  send(data: string): void;
  /** Starts closing; the `close` handler follows (also when the socket never opened). */
  close(code: number, reason: string): void;
}

/** Opens a socket to `url` offering `protocols`, and reports to `handlers`. */
export type SocketFactory = (
  url: URL,
  protocols: readonly string[],
  handlers: SocketHandlers,
) => ClientSocket;

/**
 * The default {@link SocketFactory}: a standard `WebSocket`.
 *
 * @throws {SyntaxError} When the platform refuses the URL or the protocols.
 */
export function webSocketFactory(
  url: URL,
  protocols: readonly string[],
  handlers: SocketHandlers,
): ClientSocket {
  const socket = new WebSocket(url, [...protocols]);
  socket.onopen = () => handlers.open();
  socket.onmessage = (event: MessageEvent) => {
    if (typeof event.data === "string") handlers.message(event.data);
  };
  socket.onerror = () => {}; // the close event follows, with its code
  socket.onclose = (event: CloseEvent) => handlers.close(event.code, event.reason);
  return {
    get isOpen() {
      return socket.readyState === WebSocket.OPEN;
    },
    send: (data) => socket.send(data),
    close: (code, reason) => {
      try {
        socket.close(code, reason);
      } catch {
        // already closing
      }
    },
  };
}
