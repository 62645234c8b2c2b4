/**
 * The client's connection: one socket at a time to `GET /ws`, opened through a
 * {@link SocketFactory}, with `hello`, backoff between attempts, the token (renewed after a
 * 4401, refreshed before `exp`) and the keep-alive. What to do when a socket closes comes from
 * the protocol's close policy (`closeActionFor`): resume, back off, re-authenticate or stop.
 * It is the one writer of the client's state; it knows nothing of runs or of the event stream,
 * which it hands on as frames.
 *
 * @module
 */
import { closeActionFor, PROTOCOL_V1 } from "../protocol/mod.ts";
import type { ClientFrame, ReadyFrame, ResumePosition, ServerFrame } from "../protocol/mod.ts";
import { backoffDelay } from "./backoff.ts";
import type { BackoffOptions } from "./backoff.ts";
import type { ClientSocket, SocketFactory } from "./client_socket.ts";
import { isAllowedClientTransition } from "./client_state.ts";
import type { ClientState } from "./client_state.ts";
import { ClientClosedError } from "./errors.ts";
import { KeepAlive } from "./keep_alive.ts";
import type { TimerGroup } from "./timer_group.ts";
import type { TimerHandle } from "./timers.ts";
import type { TokenSource } from "./token_source.ts";

/** A state change. */
export interface StateChange {
  readonly from: ClientState;
  readonly to: ClientState;
  /** Why the client closed for good (`to` is `closed`). */
  readonly error?: Error;
}

/** A lost connection. */
export interface Disconnect {
  /** The close code (1006 when the connection failed or was cut; 0 when no token came). */
  readonly code: number;
  readonly reason: string;
  /** The wait before the next attempt, or `undefined` when the client stops. */
  readonly retryInMs?: number;
}

/** What the transport tells the client, in this order for a `ready`: `beforeReady`, `state`, `ready`. */
export interface TransportHandlers {
  /** The `resume` of the next `hello`. */
  resumePosition(): ResumePosition | undefined;
  /** A `ready` arrived; the state is not `ready` yet (state listeners see what this sets). */
  beforeReady(frame: ReadyFrame): void;
  /** The state changed. */
  state(change: StateChange): void;
  /** The connection is ready: frames may be sent. */
  ready(frame: ReadyFrame): void;
  /** Any frame other than `ready` (a `pong` and a `refreshed` too, once handled here). */
  frame(frame: Exclude<ServerFrame, ReadyFrame>): void;
  /** The connection was lost; `retryInMs` is undefined when the client stops. */
  disconnected(info: Disconnect): void;
  /** The client closed for good (after the `closed` state change). */
  closed(error: Error): void;
}

/** Options of {@link Transport}. */
export interface TransportOptions {
  readonly url: URL;
  readonly socketFactory: SocketFactory;
  readonly tokens: TokenSource;
  readonly timers: TimerGroup;
  readonly backoff: Required<BackoffOptions>;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly handlers: TransportHandlers;
}

/** The code the client closes a socket with when its ping went unanswered. */
const PONG_LOST_CODE = 4000;

/** One socket at a time, reconnected until closed for good. */
export class Transport {
  /** Resolves with the first `ready`; rejects if the client closes before. */
  readonly ready: Promise<ReadyFrame>;
  #o: TransportOptions;
  #state: ClientState = "connecting";
  #socket?: ClientSocket;
  /** Bumped for every socket: events of an older socket are ignored. */
  #socketId = 0;
  #open = new Map<ClientSocket, Promise<void>>();
  #readyFrame?: ReadyFrame;
  #attempt = 0;
  #authFailures = 0;
  #resumedAtOnce = false;
  #reconnectTimer?: TimerHandle;
  #keepAlive: KeepAlive;
  #firstReady = Promise.withResolvers<ReadyFrame>();
  #readyWaiters: PromiseWithResolvers<ReadyFrame>[] = [];
  #closedError?: Error;

  constructor(options: TransportOptions) {
    this.#o = options;
    this.#keepAlive = new KeepAlive({
      intervalMs: options.pingIntervalMs,
      timeoutMs: options.pongTimeoutMs,
      timers: options.timers,
      sendPing: () => this.send({ type: "ping" }),
      dead: () => this.#pongLost(),
    });
    this.ready = this.#firstReady.promise;
    this.ready.catch(() => {}); // awaiters still see it
  }

  /** The current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** The `ready` of the current connection, or of the last one while reconnecting. */
  get lastReady(): ReadyFrame | undefined {
    return this.#readyFrame;
  }

  /** Why the client closed, once `closed`. */
  get closedError(): Error | undefined {
    return this.#closedError;
  }

  /** Opens the first connection. */
  start(): void {
    void this.#connect();
  }

  /** Resolves when ready (at once if it is); rejects once closed. */
  whenReady(): Promise<ReadyFrame> {
    if (this.#state === "ready" && this.#readyFrame) return Promise.resolve(this.#readyFrame);
    if (this.#state === "closed") return Promise.reject(this.#closedError);
    const waiter = Promise.withResolvers<ReadyFrame>();
    this.#readyWaiters.push(waiter);
    return waiter.promise;
  }

  /**
   * Sends a frame on the ready connection.
   *
   * @returns `false` when not ready (nothing is sent).
   */
  send(frame: ClientFrame): boolean {
    const socket = this.#socket;
    if (this.#state !== "ready" || !socket?.isOpen) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a `ping` now; its `pong` is awaited like the keep-alive's. */
  ping(): void {
    this.#keepAlive.ping();
  }

  /**
   * Closes for good with `error`.
   *
   * @returns Resolves once every socket has finished closing.
   */
  async close(error: Error): Promise<void> {
    this.#shutdown(error);
    await Promise.all(this.#open.values());
  }

  async #connect(): Promise<void> {
    let token: string;
    try {
      token = await this.#o.tokens.current();
    } catch (error) {
      if (this.#state === "closed") return;
      this.#lost(0, `Could not get a token: ${messageOf(error)}`);
      return;
    }
    if (this.#state === "closed") return;
    const id = ++this.#socketId;
    const closed = Promise.withResolvers<void>();
    let socket: ClientSocket;
    try {
      socket = this.#o.socketFactory(this.#o.url, [PROTOCOL_V1], {
        open: () => {
          if (id !== this.#socketId) return;
          const hello = { type: "hello", token, resume: this.#o.handlers.resumePosition() };
          if (socket.isOpen) socket.send(JSON.stringify(hello));
        },
        message: (data) => {
          if (id === this.#socketId) this.#onMessage(data);
        },
        close: (code, reason) => {
          this.#open.delete(socket);
          closed.resolve();
          if (id !== this.#socketId) return;
          this.#socket = undefined;
          // A connection that failed or was cut is 1006 in browsers; Deno reports 0.
          this.#onSocketClosed(code < 1000 ? 1006 : code, reason);
        },
      });
    } catch (error) {
      this.#shutdown(new ClientClosedError(`Cannot open a WebSocket: ${messageOf(error)}`));
      return;
    }
    this.#open.set(socket, closed.promise);
    this.#socket = socket;
  }

  #onMessage(data: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not ours to judge: the server only sends JSON
    }
    if (typeof frame !== "object" || frame === null) return;
    switch (frame.type) {
      case "ready":
        return this.#onReady(frame);
      case "pong":
        this.#keepAlive.pong();
        break;
      case "refreshed":
        this.#o.tokens.refreshed(frame.exp);
        break;
    }
    // Before ready the server sends nothing else; after it, every other frame is the client's.
    if (this.#state === "ready") this.#o.handlers.frame(frame);
  }

  #onReady(frame: ReadyFrame): void {
    if (this.#state === "ready") return; // one ready per connection
    this.#readyFrame = frame;
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#resumedAtOnce = false;
    this.#o.handlers.beforeReady(frame);
    this.#setState("ready");
    this.#firstReady.resolve(frame);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve(frame);
    this.#o.handlers.ready(frame);
    if ((this.#state as ClientState) !== "ready") return; // a listener closed the client
    this.#o.tokens.scheduleRefresh();
    this.#keepAlive.start();
  }

  #onSocketClosed(code: number, reason: string): void {
    this.#keepAlive.stop();
    this.#o.tokens.stop();
    if (this.#state === "closed") return;
    const action = closeActionFor(code); // docs/protocol.md#close-codes
    switch (action) {
      case "reauth":
        if (this.#o.tokens.renewable && this.#authFailures === 0) {
          // A fresh token, once per failed attempt; a second 4401 in a row stops.
          this.#authFailures++;
          this.#o.tokens.invalidate();
          return this.#lost(code, reason, 0);
        }
        return this.#fatal(code, reason, "the server rejected the token");
      case "stop":
        return this.#fatal(code, reason, "the server refused this client; retrying cannot help");
      case "resume":
        // At once, once since the last ready (the server is draining: go elsewhere); a
        // draining server answering 1012 again is backed off like any failed attempt.
        if (this.#resumedAtOnce) return this.#lost(code, reason);
        this.#resumedAtOnce = true;
        return this.#lost(code, reason, 0);
      case "backoff":
        return this.#lost(code, reason);
      default: {
        const unknown: never = action;
        return unknown;
      }
    }
  }

  /** The connection is gone and may come back: wait, then reconnect. */
  #lost(code: number, reason: string, delayMs?: number): void {
    const wait = delayMs ?? this.#backoff(this.#attempt++);
    this.#setState("reconnecting");
    this.#o.handlers.disconnected({ code, reason, retryInMs: wait });
    if (this.#state !== "reconnecting") return; // a listener closed the client
    this.#reconnectTimer = this.#o.timers.set(() => {
      this.#reconnectTimer = undefined;
      void this.#connect();
    }, wait);
  }

  #backoff(attempt: number): number {
    return backoffDelay(attempt, { ...this.#o.backoff, random: () => this.#o.timers.random() });
  }

  #pongLost(): void {
    const socket = this.#socket;
    if (!socket || this.#state !== "ready") return;
    // Unanswered: the connection is dead. Drop it now rather than wait for TCP to notice.
    this.#socketId++;
    this.#socket = undefined;
    socket.close(PONG_LOST_CODE, "No pong");
    this.#onSocketClosed(1006, "No pong in time");
  }

  #fatal(code: number, reason: string, what: string): void {
    this.#o.handlers.disconnected({ code, reason });
    this.#shutdown(
      new ClientClosedError(
        `Connection closed with ${code}${reason ? ` (${reason})` : ""}: ${what}`,
        { code },
      ),
    );
  }

  #shutdown(error: Error): void {
    if (this.#state === "closed") return;
    this.#closedError = error;
    this.#setState("closed", error);
    this.#keepAlive.stop();
    this.#o.tokens.stop();
    this.#o.timers.clear(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#socketId++; // events of the current socket are ignored from now on
    for (const socket of this.#open.keys()) socket.close(1000, "Client closed");
    this.#socket = undefined;
    this.#firstReady.reject(error);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(error);
    this.#o.handlers.closed(error);
  }

  #setState(to: ClientState, error?: Error): void {
    const from = this.#state;
    if (from === to || !isAllowedClientTransition(from, to)) return;
    this.#state = to;
    this.#o.handlers.state(error ? { from, to, error } : { from, to });
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
