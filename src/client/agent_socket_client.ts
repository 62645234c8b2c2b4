/**
 * The agentsocket client: one WebSocket to `GET /ws`, kept ready across reconnects, with
 * resume, token refresh and idempotent chat resends; the runs it follows, with their replies
 * as they stream; the threads over REST. Standard `WebSocket` and `fetch` only, so it runs
 * unchanged in browsers and in Deno.
 *
 * It is a facade over four parts, each the one writer of its own state: the
 * {@link Transport} (socket, backoff, token, keep-alive), the {@link StreamCursor} (epoch, seq,
 * replay end, dedupe), the {@link RunRegistry} (chats, runs, cancels, approvals, settling from
 * the history) and the {@link HistoryApi} (REST).
 *
 * @module
 */
import type {
  ActiveRun,
  ErrorFrame,
  EventFrame,
  ReadyFrame,
  ServerFrame,
} from "../protocol/mod.ts";
import { DEFAULT_BACKOFF } from "./backoff.ts";
import type { BackoffOptions } from "./backoff.ts";
import type { ChatRun, PendingApproval } from "./chat_run.ts";
import { webSocketFactory } from "./client_socket.ts";
import type { SocketFactory } from "./client_socket.ts";
import type { ClientState } from "./client_state.ts";
import { Conversation } from "./conversation.ts";
import { Emitter } from "./emitter.ts";
import type { Listener } from "./emitter.ts";
import { ClientClosedError } from "./errors.ts";
import { apiBaseFor, asFolder, HistoryApi } from "./history.ts";
import type { HistoryMessage, HistoryPage, PageOptions, ThreadSummary } from "./history.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./frame_size.ts";
import { RunRegistry } from "./run_registry.ts";
import type { ChatOptions } from "./run_registry.ts";
import { StreamCursor } from "./stream_cursor.ts";
import type { CursorReady } from "./stream_cursor.ts";
import { TimerGroup } from "./timer_group.ts";
import { systemTimers } from "./timers.ts";
import type { ClientTimers } from "./timers.ts";
import { TokenSource } from "./token_source.ts";
import { Transport } from "./transport.ts";
import type { Disconnect, StateChange } from "./transport.ts";

export type { ChatOptions } from "./run_registry.ts";
export type { Disconnect, StateChange } from "./transport.ts";

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** The WebSocket endpoint, e.g. `wss://chat.example.com/ws`. */
  readonly url: string | URL;
  /** A token to use as is. Give `getToken` instead to survive expiry and 4401. */
  readonly token?: string;
  /**
   * Returns a fresh token. Called before the first connection (when no `token` is given),
   * after a close with 4401 (once per failed attempt), and before `exp` to send `refresh`.
   */
  readonly getToken?: () => string | Promise<string>;
  /**
   * The base of the REST calls (`api/threads` resolves under it).
   * @default the folder of the WebSocket URL over http(s): `wss://host/chat/ws` → `https://host/chat/`
   */
  readonly apiUrl?: string | URL;
  /** Reconnect delays. */
  readonly backoff?: BackoffOptions;
  /** Refresh the token this long before its `exp`. @default 60000 */
  readonly refreshBeforeExpiryMs?: number;
  /** Send `ping` this often while ready, to notice a dead connection (0: never). @default 20000 */
  readonly pingIntervalMs?: number;
  /** A `ping` not answered within this long drops the connection (it reconnects). @default 10000 */
  readonly pongTimeoutMs?: number;
  /** How often a chat refused with `unavailable` or `rate_limited` is retried. @default 5 */
  readonly maxChatRetries?: number;
  /**
   * A chat sent on this many connections that were each cut (1006) before its ack is refused
   * with `undeliverable` instead of being sent again. @default 3
   */
  readonly maxChatAttempts?: number;
  /**
   * The largest frame sent, in bytes, when lower than the server's limit: a chat (or approve)
   * over the limit is refused with {@link FrameTooLargeError} and never sent. The server's
   * limit is `ready.maxFrameBytes`; before the first `ready`, or from a server that does not
   * say, 65536 (the protocol's default). @default the server's limit
   */
  readonly maxFrameBytes?: number;
  /** Timers, clock and randomness (tests inject their own). */
  readonly timers?: ClientTimers;
  /** The `fetch` of the REST calls. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** Opens the sockets (tests give sockets they drive). @default a standard `WebSocket` */
  readonly socketFactory?: SocketFactory;
}

/** The server could not resume: the client reloads history and settles its runs. */
export interface ResetInfo {
  readonly previousEpoch: string;
  readonly epoch: string;
  /** The event log itself was replaced (its seqs start over). */
  readonly epochChanged: boolean;
  /** The runs still in flight; their events follow from `agent_started`. */
  readonly activeRuns: readonly ActiveRun[];
}

/** The events a client emits, by name. */
export interface ClientEventMap {
  /** The state changed. */
  state: StateChange;
  /** A connection reached `ready` (the first one, and each reconnect). */
  ready: ReadyFrame;
  /** The connection was lost. */
  disconnected: Disconnect;
  /** A run event: each exactly once, in seq order, whatever the reconnects. */
  event: EventFrame;
  /** A run became known: a chat of this client, or a run seen started elsewhere. */
  run: ChatRun;
  /** A reconnect could not resume (`resumed:false`): reload what you show. */
  reset: ResetInfo;
  /** The server accepted a `refresh`: the connection now lives until `exp` (seconds). */
  refreshed: { readonly exp: number };
  /** The tool calls waiting for a person's decision changed (all runs, oldest first). */
  approvals: readonly PendingApproval[];
  /** An `error` frame that answers nothing this client tracks. */
  error: ErrorFrame;
}

/**
 * Opens a client: it connects at once, and reconnects by itself until {@link
 * AgentSocketClient.close} or a close code that forbids it.
 *
 * @example Ask, and follow the run
 * ```ts ignore
 * import { connect } from "./mod.ts";
 * const client = connect({ url: "ws://127.0.0.1:8000/ws", getToken: fetchToken });
 * await client.ready;
 * const run = client.chat("what is 6*7");
 * for await (const piece of run.pieces()) console.log(piece.kind, piece.text);
 * console.log(await run.reply); // "6*7 = 42"
 * await client.close();
 * ```
 *
 * @param options Where to connect and how to authenticate.
 * @returns The client, already connecting.
 * @throws {TypeError} When neither `token` nor `getToken` is given, or `url` is not ws(s).
 */
export function connect(options: ConnectOptions): AgentSocketClient {
  return new AgentSocketClient(options);
}

/** A connection to agentsocket that stays ready (see {@link connect}). */
export class AgentSocketClient {
  /** Resolves with the first `ready`; rejects if the client closes before. */
  readonly ready: Promise<ReadyFrame>;
  #events = new Emitter<ClientEventMap>();
  #timers: TimerGroup;
  #transport: Transport;
  #cursor = new StreamCursor();
  #runs: RunRegistry;
  #history: HistoryApi;
  #maxFrameBytes?: number;
  /** What the cursor made of the `ready` being handled. */
  #readying?: CursorReady;

  constructor(options: ConnectOptions) {
    const url = new URL(options.url);
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new TypeError(
        `Cannot connect: "url" must be a ws: or wss: URL, received "${url.href}"`,
      );
    }
    this.#maxFrameBytes = options.maxFrameBytes;
    const timers = this.#timers = new TimerGroup(options.timers ?? systemTimers);
    const tokens = new TokenSource({
      token: options.token,
      getToken: options.getToken,
      refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? 60_000,
      timers,
      channel: {
        isReady: () => this.#transport.state === "ready",
        sendRefresh: (token) => this.#transport.send({ type: "refresh", token }),
      },
    });
    const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#history = new HistoryApi({
      base: options.apiUrl ? asFolder(new URL(options.apiUrl)) : apiBaseFor(url),
      tokens,
      fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    });
    this.#runs = new RunRegistry({
      connection: {
        send: (frame) => this.#transport.send(frame),
        current: () => this.#transport.state === "ready" ? this.#transport.lastReady : undefined,
        maxFrameBytes: () => this.maxFrameBytes,
      },
      history: this.#history,
      timers,
      backoff,
      maxChatRetries: options.maxChatRetries ?? 5,
      maxChatAttempts: options.maxChatAttempts ?? 3,
      events: {
        run: (run) => this.#events.emit("run", run),
        approvals: (pending) => this.#events.emit("approvals", pending),
      },
    });
    this.#transport = new Transport({
      url,
      socketFactory: options.socketFactory ?? webSocketFactory,
      tokens,
      timers,
      backoff,
      pingIntervalMs: options.pingIntervalMs ?? 20_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      handlers: {
        resumePosition: () => this.#cursor.resumePosition(),
        beforeReady: (frame) => {
          this.#readying = this.#cursor.ready(frame);
        },
        state: (change) => this.#events.emit("state", change),
        ready: (frame) => this.#onReady(frame),
        frame: (frame) => this.#onFrame(frame),
        disconnected: (info) => {
          this.#runs.disconnected(info.code);
          this.#events.emit("disconnected", info);
        },
        closed: (error) => {
          this.#runs.close(error);
          this.#timers.stop();
        },
      },
    });
    this.ready = this.#transport.ready;
    this.#transport.start();
  }

  /** The current state. */
  get state(): ClientState {
    return this.#transport.state;
  }

  /** The user (JWT `sub`), once ready. */
  get userId(): string | undefined {
    return this.#transport.lastReady?.userId;
  }

  /** The epoch of the user's event log the client follows. */
  get epoch(): string | undefined {
    return this.#cursor.epoch;
  }

  /** The seq of the last event delivered (the resume position). */
  get lastSeq(): number {
    return this.#cursor.lastSeq;
  }

  /** Why the client closed, once `closed`. */
  get closedError(): Error | undefined {
    return this.#transport.closedError;
  }

  /**
   * The largest frame the client sends, in bytes: the server's limit (`ready.maxFrameBytes`,
   * 65536 when it does not say), or `maxFrameBytes` when lower.
   */
  get maxFrameBytes(): number {
    const announced = this.#transport.lastReady?.maxFrameBytes;
    const server = typeof announced === "number" && announced > 0
      ? announced
      : DEFAULT_MAX_FRAME_BYTES;
    return Math.min(server, this.#maxFrameBytes ?? Infinity);
  }

  /** The runs followed and not settled yet (this client's chats and other tabs' runs). */
  get runs(): readonly ChatRun[] {
    return this.#runs.runs;
  }

  /** The tool calls of every run that wait for a person's decision. */
  get pendingApprovals(): readonly PendingApproval[] {
    return this.#runs.pendingApprovals;
  }

  /**
   * Listens to an event.
   *
   * @returns A function that removes the listener.
   */
  on<K extends keyof ClientEventMap>(type: K, listener: Listener<ClientEventMap, K>): () => void {
    return this.#events.on(type, listener);
  }

  /** Resolves when the client is ready (at once if it is); rejects once it is closed. */
  whenReady(): Promise<ReadyFrame> {
    return this.#transport.whenReady();
  }

  /**
   * Sends a chat message and returns its run. Before `ready` (or while reconnecting) the chat
   * waits and is sent once ready; a chat not acknowledged when the connection drops is sent
   * again with the same id, and the server answers a repeat with the same run.
   *
   * @throws {TypeError} When `text` is empty, or the id is already in flight.
   * @throws {FrameTooLargeError} When the frame would exceed the frame limit (see
   *   {@link AgentSocketClient.maxFrameBytes}); nothing is sent.
   * @throws {ClientClosedError} When the client is closed.
   */
  chat(text: string, options: ChatOptions = {}): ChatRun {
    if (this.state === "closed") {
      throw new ClientClosedError("Cannot send chat: the client is closed", {
        cause: this.closedError,
      });
    }
    if (typeof text !== "string" || text.trim() === "") {
      throw new TypeError('Cannot send chat: "text" must be a non-empty string');
    }
    return this.#runs.chat(text, options);
  }

  /** Asks the server to cancel a run (sent when connected; the run ends `agent_cancelled`). */
  cancel(runId: string): void {
    this.#runs.cancelRun(runId);
  }

  /** A run followed by this client, by id (while not settled). */
  run(runId: string): ChatRun | undefined {
    return this.#runs.get(runId);
  }

  /** The caller's threads, newest first; `nextCursor` pages to older ones. */
  listThreads(options: PageOptions = {}): Promise<HistoryPage<ThreadSummary>> {
    return this.#history.listThreads(options);
  }

  /**
   * A page of a thread's messages (oldest first within the page).
   *
   * @returns The page, or `null` when the server does not know the thread.
   */
  listMessages(
    threadId: string,
    options: PageOptions = {},
  ): Promise<HistoryPage<HistoryMessage> | null> {
    return this.#history.listMessages(threadId, options);
  }

  /**
   * Opens a thread as a {@link Conversation}: its newest history merged with the runs this
   * client follows, kept live; without `threadId`, a new conversation (its first message
   * starts the thread).
   *
   * @returns The conversation, loaded; `dispose()` it when done.
   * @throws {HistoryRequestError} (rejection) When the history cannot be read.
   */
  async openThread(threadId?: string): Promise<Conversation> {
    const conversation = new Conversation(this, { threadId });
    try {
      await conversation.load();
    } catch (error) {
      conversation.dispose();
      throw error;
    }
    return conversation;
  }

  /**
   * Renames a thread.
   *
   * @returns The thread as the server now has it.
   * @throws {RangeError} (rejection) When `title` is blank or longer than 200 characters once
   *   trimmed.
   * @throws {HistoryRequestError} (rejection) With status 404 when the thread is not the caller's.
   */
  renameThread(threadId: string, title: string): Promise<ThreadSummary> {
    return this.#history.renameThread(threadId, title);
  }

  /**
   * Deletes a thread, its messages and runs; a run of it in flight is cancelled (and settles
   * `cancelled` here), and its events are never replayed again.
   *
   * @throws {HistoryRequestError} (rejection) With status 404 when the thread is not the caller's.
   */
  async deleteThread(threadId: string): Promise<void> {
    await this.#history.deleteThread(threadId);
    this.#runs.threadDeleted(threadId);
  }

  /**
   * Closes the client for good: pending runs reject with {@link ClientClosedError}.
   *
   * @returns Resolves once every socket has finished closing.
   */
  async close(): Promise<void> {
    await this.#transport.close(new ClientClosedError("The client was closed"));
  }

  #onReady(frame: ReadyFrame): void {
    const readying = this.#readying ?? { awaitReplayEnd: false };
    this.#readying = undefined;
    this.#events.emit("ready", frame);
    if (this.state !== "ready") return; // a listener closed the client
    if (readying.reset) {
      this.#events.emit("reset", {
        previousEpoch: readying.reset.previousEpoch,
        epoch: frame.epoch,
        epochChanged: readying.reset.epochChanged,
        activeRuns: frame.activeRuns,
      });
      if (this.state !== "ready") return;
    }
    // The replay of the active runs was sent with ready; a pong after it marks its end.
    if (readying.awaitReplayEnd) this.#transport.ping();
    this.#runs.connected(frame, { reset: readying.reset !== undefined });
  }

  #onFrame(frame: Exclude<ServerFrame, ReadyFrame>): void {
    switch (frame.type) {
      case "event":
        if (!this.#cursor.accept(frame)) return; // delivered already (docs/protocol.md#resume)
        this.#runs.deliver(frame);
        this.#events.emit("event", frame);
        return;
      case "ack":
        return this.#runs.acknowledged(frame);
      case "error":
        if (!this.#runs.refused(frame)) this.#events.emit("error", frame);
        return;
      case "refreshed":
        return this.#events.emit("refreshed", { exp: frame.exp });
      case "pong":
        return this.#cursor.pong();
      default: {
        // A frame type this version does not know: ignored (docs/protocol.md#after-ready).
        const unknown: never = frame;
        return unknown;
      }
    }
  }
}
