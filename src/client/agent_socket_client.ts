/**
 * The agentsocket client: one WebSocket to `GET /ws`, kept ready across reconnects, with
 * resume, token refresh and idempotent chat resends. Standard `WebSocket` and `fetch` only, so
 * it runs unchanged in browsers and in Deno.
 *
 * @module
 */
import { CloseCode, PROTOCOL_V1, TERMINAL_EVENT_NAMES } from "../protocol/mod.ts";
import type {
  AckFrame,
  ActiveRun,
  ClientFrame,
  ErrorFrame,
  EventFrame,
  ReadyFrame,
  ServerFrame,
} from "../protocol/mod.ts";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
import type { BackoffOptions } from "./backoff.ts";
import { TrackedRun } from "./chat_run.ts";
import type { ChatRun } from "./chat_run.ts";
import { isAllowedClientTransition } from "./client_state.ts";
import type { ClientState } from "./client_state.ts";
import { ChatRefusedError, ClientClosedError, RunLostError } from "./errors.ts";
import { apiBaseFor, HistoryRequestError } from "./history.ts";
import type { HistoryMessage, HistoryPage, PageOptions, ThreadSummary } from "./history.ts";
import { jwtExpiry } from "./jwt_expiry.ts";
import { systemTimers } from "./timers.ts";
import type { ClientTimers, TimerHandle } from "./timers.ts";

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
  /** The base of the REST history. @default the WebSocket URL's host over http(s) */
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
  /** Largest frame sent, in bytes; a larger chat throws `RangeError`. @default 65536 */
  readonly maxFrameBytes?: number;
  /** Timers, clock and randomness (tests inject their own). */
  readonly timers?: ClientTimers;
  /** The `fetch` used for the REST history. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** Options of {@link AgentSocketClient.chat}. */
export interface ChatOptions {
  /** Continue this thread; without it the server starts a new one. */
  readonly threadId?: string;
  /** The chat's idempotency key. @default a random UUID */
  readonly id?: string;
}

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
  /** An `error` frame that answers nothing this client tracks. */
  error: ErrorFrame;
}

type Listener<K extends keyof ClientEventMap> = (detail: ClientEventMap[K]) => void;

/** What a look-up in the history found for a run. */
type HistoryVerdict =
  | { readonly kind: "gone" }
  | { readonly kind: "reply"; readonly text: string }
  | { readonly kind: "no_reply" };

const RETRYABLE_CHAT_ERRORS = new Set(["unavailable", "rate_limited"]);
/** Close codes after which retrying cannot help: fix the client. */
const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.PolicyViolation,
  CloseCode.MessageTooBig,
  CloseCode.BadHello,
]);
const PONG_LOST_CODE = 4000;
const MAX_TIMER_MS = 2 ** 31 - 1;
const HISTORY_PAGE_LIMIT = 200;
const HISTORY_MAX_PAGES = 5;
const SETTLE_ATTEMPTS = 5;
const RECENTLY_SETTLED = 512;

interface SocketRecord {
  readonly socket: WebSocket;
  readonly closed: Promise<void>;
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
 * for await (const event of run) console.log(event.name);
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
  #url: URL;
  #apiBase: URL;
  #o: Required<Omit<ConnectOptions, "token" | "getToken" | "apiUrl" | "url" | "backoff">> & {
    getToken?: () => string | Promise<string>;
    backoff: Required<BackoffOptions>;
  };
  #timers: ClientTimers;
  #state: ClientState = "connecting";
  #listeners = new Map<keyof ClientEventMap, Set<(detail: never) => void>>();
  #firstReady = Promise.withResolvers<ReadyFrame>();
  #readyWaiters: PromiseWithResolvers<ReadyFrame>[] = [];
  #closedError?: Error;

  // The connection.
  #socket?: WebSocket;
  #socketId = 0;
  #sockets = new Map<WebSocket, SocketRecord>();
  #readyFrame?: ReadyFrame;
  #attempt = 0;
  #authFailures = 0;
  #reconnectTimer?: TimerHandle;
  #timerHandles = new Set<TimerHandle>();

  // Tokens.
  #token?: string;
  #tokenStale = false;
  #refreshTimer?: TimerHandle;
  #refreshing?: string;

  // Keepalive.
  #pingTimer?: TimerHandle;
  #pongTimer?: TimerHandle;

  // The event stream position.
  #epoch?: string;
  #lastSeq = 0;
  #readySeq = 0;
  #replayPending = false;

  // Runs.
  #byChatId = new Map<string, TrackedRun>();
  #byRunId = new Map<string, TrackedRun>();
  #unsettled = new Set<TrackedRun>();
  #recentlySettled = new Set<string>();
  #pendingCancels = new Set<string>();
  #statusChecks = new Set<TrackedRun>();
  #requests = new Map<string, Promise<unknown>>();

  constructor(options: ConnectOptions) {
    if (options.token === undefined && options.getToken === undefined) {
      throw new TypeError('Cannot connect: "token" or "getToken" is required');
    }
    this.#url = new URL(options.url);
    if (this.#url.protocol !== "ws:" && this.#url.protocol !== "wss:") {
      throw new TypeError(
        `Cannot connect: "url" must be a ws: or wss: URL, received "${this.#url.href}"`,
      );
    }
    this.#apiBase = options.apiUrl ? new URL(options.apiUrl) : apiBaseFor(this.#url);
    this.#timers = options.timers ?? systemTimers;
    this.#token = options.token;
    this.#o = {
      getToken: options.getToken,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
      refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? 60_000,
      pingIntervalMs: options.pingIntervalMs ?? 20_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      maxChatRetries: options.maxChatRetries ?? 5,
      maxFrameBytes: options.maxFrameBytes ?? 65_536,
      timers: this.#timers,
      fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
    };
    this.ready = this.#firstReady.promise;
    this.ready.catch(() => {}); // awaiters still see it
    void this.#open();
  }

  /** The current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** The user (JWT `sub`), once ready. */
  get userId(): string | undefined {
    return this.#readyFrame?.userId;
  }

  /** The epoch of the user's event log the client follows. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** The seq of the last event delivered (the resume position). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Why the client closed, once `closed`. */
  get closedError(): Error | undefined {
    return this.#closedError;
  }

  /**
   * Listens to an event.
   *
   * @returns A function that removes the listener.
   */
  on<K extends keyof ClientEventMap>(type: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(listener as (detail: never) => void);
    return () => set.delete(listener as (detail: never) => void);
  }

  /** Resolves when the client is ready (at once if it is); rejects once it is closed. */
  whenReady(): Promise<ReadyFrame> {
    if (this.#state === "ready" && this.#readyFrame) return Promise.resolve(this.#readyFrame);
    if (this.#state === "closed") return Promise.reject(this.#closedError);
    const waiter = Promise.withResolvers<ReadyFrame>();
    this.#readyWaiters.push(waiter);
    return waiter.promise;
  }

  /**
   * Sends a chat message and returns its run. Before `ready` (or while reconnecting) the chat
   * waits and is sent once ready; a chat not acknowledged when the connection drops is sent
   * again with the same id, and the server answers a repeat with the same run.
   *
   * @throws {TypeError} When `text` is empty.
   * @throws {RangeError} When the frame would exceed `maxFrameBytes`.
   * @throws {ClientClosedError} When the client is closed.
   */
  chat(text: string, options: ChatOptions = {}): ChatRun {
    if (this.#state === "closed") {
      throw new ClientClosedError("Cannot send chat: the client is closed", {
        cause: this.#closedError,
      });
    }
    if (typeof text !== "string" || text.trim() === "") {
      throw new TypeError('Cannot send chat: "text" must be a non-empty string');
    }
    const chatId = options.id ?? randomId();
    if (this.#byChatId.has(chatId)) {
      throw new TypeError(`Cannot send chat: id "${chatId}" is already in flight`);
    }
    const frame = { type: "chat", id: chatId, threadId: options.threadId, text };
    const bytes = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (bytes > this.#o.maxFrameBytes) {
      throw new RangeError(
        `Cannot send chat: the frame is ${bytes} bytes, more than ${this.#o.maxFrameBytes}`,
      );
    }
    const run = this.#track(
      new TrackedRun(
        { local: true, chatId, text, threadId: options.threadId },
        (r) => this.#requestCancel(r),
      ),
    );
    this.#emit("run", run);
    this.#sendChat(run);
    return run;
  }

  /** Asks the server to cancel a run (sent when connected; the run ends `agent_cancelled`). */
  cancel(runId: string): void {
    const run = this.#byRunId.get(runId);
    if (run) return run.cancel();
    if (this.#state === "closed") return;
    this.#pendingCancels.add(runId);
    this.#flushCancels();
  }

  /** The caller's threads, newest first. */
  async listThreads(options: PageOptions = {}): Promise<HistoryPage<ThreadSummary>> {
    const body = await this.#getJson(`/api/threads${query(options)}`) as {
      threads: ThreadSummary[];
      nextCursor?: string;
    };
    return { items: body.threads, nextCursor: body.nextCursor };
  }

  /**
   * A page of a thread's messages (oldest first within the page).
   *
   * @returns The page, or `null` when the server does not know the thread.
   */
  async listMessages(
    threadId: string,
    options: PageOptions = {},
  ): Promise<HistoryPage<HistoryMessage> | null> {
    const path = `/api/threads/${encodeURIComponent(threadId)}/messages${query(options)}`;
    const body = await this.#getJson(path, { allowNotFound: true }) as
      | { messages: HistoryMessage[]; nextCursor?: string }
      | null;
    return body === null ? null : { items: body.messages, nextCursor: body.nextCursor };
  }

  /**
   * Closes the client for good: pending runs reject with {@link ClientClosedError}.
   *
   * @returns Resolves once every socket has finished closing.
   */
  async close(): Promise<void> {
    this.#shutdown(new ClientClosedError("The client was closed"));
    await Promise.all([...this.#sockets.values()].map((record) => record.closed));
  }

  // ---- connecting ---------------------------------------------------------------------------

  async #open(): Promise<void> {
    let token: string;
    try {
      token = await this.#tokenForAttempt();
    } catch (error) {
      if (this.#state === "closed") return;
      this.#lost(0, `Could not get a token: ${messageOf(error)}`);
      return;
    }
    if (this.#state === "closed") return;
    const id = ++this.#socketId;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.#url, [PROTOCOL_V1]);
    } catch (error) {
      this.#shutdown(new ClientClosedError(`Cannot open a WebSocket: ${messageOf(error)}`));
      return;
    }
    const closed = Promise.withResolvers<void>();
    this.#sockets.set(socket, { socket, closed: closed.promise });
    this.#socket = socket;
    socket.onopen = () => {
      if (id !== this.#socketId) return;
      const resume = this.#epoch === undefined
        ? undefined
        : { epoch: this.#epoch, after: this.#lastSeq };
      this.#sendRaw(socket, { type: "hello", token, resume });
    };
    socket.onmessage = (event: MessageEvent) => {
      if (id !== this.#socketId || typeof event.data !== "string") return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to judge: the server only sends JSON
      }
      if (typeof frame === "object" && frame !== null) this.#onFrame(frame);
    };
    socket.onerror = () => {}; // the close event follows, with its code
    socket.onclose = (event: CloseEvent) => {
      this.#sockets.delete(socket);
      closed.resolve();
      if (id !== this.#socketId) return;
      this.#socket = undefined;
      // A connection that failed or was cut is 1006 in browsers; Deno reports 0.
      this.#onSocketClosed(event.code < 1000 ? 1006 : event.code, event.reason);
    };
  }

  async #tokenForAttempt(): Promise<string> {
    if ((this.#token === undefined || this.#tokenStale) && this.#o.getToken) {
      const token = await this.#o.getToken();
      if (typeof token !== "string" || token === "") {
        throw new TypeError("getToken() must return a non-empty string");
      }
      this.#token = token;
      this.#tokenStale = false;
    }
    return this.#token!;
  }

  #onSocketClosed(code: number, reason: string): void {
    this.#stopConnectionTimers();
    if (this.#state === "closed") return;
    if (code === CloseCode.Unauthorized) {
      if (this.#o.getToken && this.#authFailures === 0) {
        // SPEC §3: a fresh token, once per failed attempt; a second 4401 in a row stops.
        this.#authFailures++;
        this.#tokenStale = true;
        this.#lost(code, reason, 0);
        return;
      }
      this.#fatal(code, reason, "the server rejected the token");
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) {
      this.#fatal(code, reason, "the server refused this client; retrying cannot help");
      return;
    }
    this.#lost(code, reason);
  }

  /** The connection is gone and may come back: back off, then reconnect. */
  #lost(code: number, reason: string, delayMs?: number): void {
    const wait = delayMs ??
      backoffDelay(this.#attempt++, { ...this.#o.backoff, random: () => this.#timers.random() });
    this.#setState("reconnecting");
    this.#emit("disconnected", { code, reason, retryInMs: wait });
    this.#reconnectTimer = this.#setTimer(() => {
      this.#reconnectTimer = undefined;
      void this.#open();
    }, wait);
  }

  #fatal(code: number, reason: string, what: string): void {
    this.#emit("disconnected", { code, reason });
    this.#shutdown(
      new ClientClosedError(
        `Connection closed with ${code}${reason ? ` (${reason})` : ""}: ${what}`,
        {
          code,
        },
      ),
    );
  }

  #shutdown(error: Error): void {
    if (this.#state === "closed") return;
    this.#closedError = error;
    this.#setState("closed", error);
    this.#stopConnectionTimers();
    for (const handle of this.#timerHandles) this.#timers.clearTimeout(handle);
    this.#timerHandles.clear();
    this.#reconnectTimer = undefined;
    this.#socketId++; // events of the current socket are ignored from now on
    for (const { socket } of this.#sockets.values()) closeQuietly(socket, 1000, "Client closed");
    this.#socket = undefined;
    this.#firstReady.reject(error);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(error);
    const lost = new ClientClosedError("The client closed before the run ended", { cause: error });
    for (const run of [...this.#unsettled]) run.lose(lost);
  }

  // ---- frames -------------------------------------------------------------------------------

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "ready":
        return this.#onReady(frame);
      case "event":
        return this.#onEvent(frame);
      case "ack":
        return this.#onAck(frame);
      case "error":
        return this.#onError(frame);
      case "refreshed":
        return this.#onRefreshed(frame.exp);
      case "pong":
        if (this.#pongTimer !== undefined) this.#clearTimer(this.#pongTimer);
        this.#pongTimer = undefined;
        if (this.#replayPending) this.#endReplay();
        return;
      default:
        return; // SPEC §3: clients ignore what they do not know
    }
  }

  #onReady(frame: ReadyFrame): void {
    if (this.#state === "ready") return; // one ready per connection
    const previousEpoch = this.#epoch;
    const epochChanged = previousEpoch !== undefined && previousEpoch !== frame.epoch;
    this.#readyFrame = frame;
    this.#attempt = 0;
    this.#authFailures = 0;
    if (frame.resumed) {
      this.#replayPending = false;
    } else {
      // A new log (or a rewound one) starts its seqs over: what we hold no longer compares.
      if (epochChanged || frame.seq < this.#lastSeq) this.#lastSeq = 0;
      this.#readySeq = frame.seq;
      this.#replayPending = frame.activeRuns.length > 0;
      if (!this.#replayPending) this.#lastSeq = Math.max(this.#lastSeq, frame.seq);
    }
    this.#epoch = frame.epoch;
    this.#setState("ready");
    this.#firstReady.resolve(frame);
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve(frame);
    this.#emit("ready", frame);
    if ((this.#state as ClientState) !== "ready") return; // a listener closed the client
    if (!frame.resumed && previousEpoch !== undefined) {
      this.#emit("reset", {
        previousEpoch,
        epoch: frame.epoch,
        epochChanged,
        activeRuns: frame.activeRuns,
      });
      this.#settleAfterReset(frame);
    }
    // The replay of the active runs was sent with ready; a pong after it marks its end.
    if (this.#replayPending) this.#sendPing();
    for (const run of this.#unsettled) {
      if (run.state === "sending" || this.#statusChecks.has(run)) this.#sendChat(run);
    }
    this.#flushCancels();
    this.#scheduleRefresh();
    this.#schedulePing();
  }

  #onEvent(event: EventFrame): void {
    if (this.#replayPending && event.seq > this.#readySeq) this.#endReplay();
    if (event.seq <= this.#lastSeq) return; // delivered already (SPEC §3 Resume)
    this.#lastSeq = event.seq;
    const run = this.#runFor(event);
    if (run) {
      run.push(event);
      // A run seen started elsewhere is found by its chat id too (for a status check).
      if (run.chatId !== undefined && !this.#byChatId.has(run.chatId)) {
        this.#byChatId.set(run.chatId, run);
      }
    }
    if (TERMINAL_EVENT_NAMES.has(event.name)) this.#pendingCancels.delete(event.runId);
    this.#emit("event", event);
  }

  #onAck(ack: AckFrame): void {
    const run = this.#byChatId.get(ack.id);
    if (!run || (!run.local && !this.#statusChecks.has(run))) return;
    const statusCheck = this.#statusChecks.delete(run);
    if (run.runId === undefined) this.#byRunId.set(ack.runId, run);
    run.acknowledge(ack);
    if (run.cancelRequested) this.#requestCancel(run);
    if (run.done || !ack.duplicate || ack.status === undefined || ack.status === "running") return;
    // A repeat of a chat whose run ended: if this connection does not replay that run's
    // events, its outcome comes from the history (SPEC §3: resumed:false → reload).
    if (!statusCheck && this.#follows(run)) return;
    if (ack.status === "completed") {
      void this.#settleFromHistory(run, { afterStatus: true });
    } else {
      run.fail(
        ack.status,
        ack.status === "cancelled"
          ? "The run was cancelled while the client was disconnected"
          : "The run failed while the client was disconnected",
      );
    }
  }

  #onError(frame: ErrorFrame): void {
    const ref = frame.ref;
    const run = ref === undefined ? undefined : this.#byChatId.get(ref);
    if (run && (run.state === "sending" || this.#statusChecks.has(run))) {
      const statusCheck = this.#statusChecks.delete(run);
      if (frame.code === "draining") {
        if (statusCheck) this.#statusChecks.add(run);
        return; // the server closes with 1012; the chat is resent after the reconnect
      }
      if (RETRYABLE_CHAT_ERRORS.has(frame.code) && run.retries < this.#o.maxChatRetries) {
        if (statusCheck) this.#statusChecks.add(run);
        const wait = backoffDelay(run.retries++, {
          ...this.#o.backoff,
          random: () => this.#timers.random(),
        });
        this.#setTimer(() => this.#sendChat(run), wait);
        return;
      }
      if (statusCheck) {
        run.lose(new RunLostError(`The server no longer knows this run (${frame.message})`));
      } else {
        run.refuse(new ChatRefusedError(frame.code, frame.message));
      }
      return;
    }
    if (ref !== undefined && (this.#pendingCancels.delete(ref) || this.#byRunId.has(ref))) return;
    this.#emit("error", frame);
  }

  #onRefreshed(exp: number): void {
    if (this.#refreshing !== undefined) this.#token = this.#refreshing;
    this.#refreshing = undefined;
    this.#emit("refreshed", { exp });
    this.#scheduleRefresh(exp);
  }

  #endReplay(): void {
    this.#replayPending = false;
    this.#lastSeq = Math.max(this.#lastSeq, this.#readySeq);
  }

  // ---- runs ---------------------------------------------------------------------------------

  #track(run: TrackedRun): TrackedRun {
    if (run.chatId !== undefined) this.#byChatId.set(run.chatId, run);
    if (run.runId !== undefined) this.#byRunId.set(run.runId, run);
    this.#unsettled.add(run);
    void run.settled.then(() => this.#forget(run));
    return run;
  }

  #forget(run: TrackedRun): void {
    this.#unsettled.delete(run);
    this.#statusChecks.delete(run);
    if (run.chatId !== undefined && this.#byChatId.get(run.chatId) === run) {
      this.#byChatId.delete(run.chatId);
    }
    if (run.runId === undefined) return;
    if (this.#byRunId.get(run.runId) === run) this.#byRunId.delete(run.runId);
    this.#pendingCancels.delete(run.runId);
    this.#recentlySettled.add(run.runId);
    if (this.#recentlySettled.size > RECENTLY_SETTLED) {
      this.#recentlySettled.delete(this.#recentlySettled.values().next().value!);
    }
  }

  /** The run an event belongs to: known, one of our chats (by `chatId`), or a new remote run. */
  #runFor(event: EventFrame): TrackedRun | undefined {
    const known = this.#byRunId.get(event.runId);
    if (known) return known;
    if (this.#recentlySettled.has(event.runId)) return undefined;
    const chatId = event.name === "agent_started" ? event.data.chatId : undefined;
    const local = typeof chatId === "string" ? this.#byChatId.get(chatId) : undefined;
    if (local && local.runId === undefined) {
      // Our chat's run, whose ack was lost with a connection: its events say so.
      local.bind(event);
      this.#byRunId.set(event.runId, local);
      if (local.cancelRequested) this.#requestCancel(local);
      return local;
    }
    const run = this.#track(
      new TrackedRun(
        { local: false, runId: event.runId, threadId: event.threadId },
        (r) => this.#requestCancel(r),
      ),
    );
    this.#emit("run", run);
    return run;
  }

  /** Whether this connection delivers the run's remaining events. */
  #follows(run: TrackedRun): boolean {
    const ready = this.#readyFrame;
    if (!ready || this.#state !== "ready") return false;
    return ready.resumed || ready.activeRuns.some((active) => active.runId === run.runId);
  }

  /** After `resumed:false`: every run that is not replayed settles from the history. */
  #settleAfterReset(frame: ReadyFrame): void {
    const active = new Set(frame.activeRuns.map((run) => run.runId));
    for (const run of [...this.#unsettled]) {
      if (run.runId === undefined || active.has(run.runId)) continue; // resent, or replayed
      void this.#settleFromHistory(run, { afterStatus: false });
    }
  }

  async #settleFromHistory(run: TrackedRun, options: { afterStatus: boolean }): Promise<void> {
    for (let attempt = 0;; attempt++) {
      if (run.done || this.#state === "closed") return;
      let verdict: HistoryVerdict;
      try {
        verdict = await this.#findInHistory(run);
      } catch (error) {
        if (attempt + 1 >= SETTLE_ATTEMPTS) {
          run.lose(
            new RunLostError("Could not read the history to settle this run", { cause: error }),
          );
          return;
        }
        await this.#delay(
          backoffDelay(attempt, { ...this.#o.backoff, random: () => this.#timers.random() }),
        );
        continue;
      }
      if (run.done) return;
      if (verdict.kind === "reply") return run.complete(verdict.text);
      if (verdict.kind === "gone") {
        return run.lose(
          new RunLostError(
            "The server no longer has this conversation (its history was reset); the run's " +
              "outcome is unknown",
          ),
        );
      }
      if (options.afterStatus || run.chatId === undefined || run.text === undefined) {
        return run.lose(
          new RunLostError("The run ended while the client was disconnected; its reply is unknown"),
        );
      }
      // No reply stored: the run failed, was cancelled, or runs on. A repeat of the chat
      // (same id, same thread) is answered with the run's status and starts nothing.
      this.#statusChecks.add(run);
      this.#sendChat(run);
      return;
    }
  }

  async #findInHistory(run: TrackedRun): Promise<HistoryVerdict> {
    let before: string | undefined;
    for (let page = 0; page < HISTORY_MAX_PAGES; page++) {
      const result = await this.listMessages(run.threadId!, { limit: HISTORY_PAGE_LIMIT, before });
      if (result === null) return { kind: "gone" };
      const reply = result.items.find((m) =>
        m.runId === run.runId && m.role === "assistant" && m.runStatus === "completed"
      );
      if (reply) return { kind: "reply", text: reply.text };
      if (result.items.some((m) => m.runId === run.runId) || !result.nextCursor) break;
      before = result.nextCursor;
    }
    return { kind: "no_reply" };
  }

  #sendChat(run: TrackedRun): void {
    if (this.#state !== "ready" || run.done) return;
    const statusCheck = this.#statusChecks.has(run);
    if (run.state !== "sending" && !statusCheck) return;
    // A status check names the run's own thread, so a server that forgot the chat answers
    // not_found instead of starting a new thread.
    const threadId = statusCheck ? run.threadId : run.requestedThreadId;
    this.#send({ type: "chat", id: run.chatId!, threadId, text: run.text! });
  }

  #requestCancel(run: TrackedRun): void {
    if (run.runId === undefined) return; // sent once the ack names the run
    this.#pendingCancels.add(run.runId);
    this.#flushCancels();
  }

  #flushCancels(): void {
    if (this.#state !== "ready") return;
    for (const runId of this.#pendingCancels) {
      this.#send({ type: "cancel", runId });
      if (!this.#byRunId.has(runId)) this.#pendingCancels.delete(runId); // nothing to watch
    }
  }

  // ---- tokens and keepalive -----------------------------------------------------------------

  #scheduleRefresh(exp = this.#token ? jwtExpiry(this.#token) : undefined): void {
    if (this.#refreshTimer !== undefined) this.#clearTimer(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (exp === undefined || !this.#o.getToken) return;
    const at = exp * 1000 - this.#o.refreshBeforeExpiryMs;
    const wait = Math.min(Math.max(0, at - this.#timers.now()), MAX_TIMER_MS);
    this.#refreshTimer = this.#setTimer(() => {
      this.#refreshTimer = undefined;
      if (this.#timers.now() < at) return this.#scheduleRefresh(exp); // a very long wait
      void this.#refresh(exp);
    }, wait);
  }

  async #refresh(currentExp: number): Promise<void> {
    if (this.#state !== "ready" || !this.#o.getToken) return;
    let token: string;
    try {
      token = await this.#o.getToken();
    } catch {
      return; // the server closes with 4401 at exp; the reconnect asks for a token again
    }
    const exp = jwtExpiry(token);
    // A token that does not outlive the current one cannot extend the connection.
    if (exp === undefined || exp <= currentExp || this.#state !== "ready") return;
    this.#refreshing = token;
    this.#send({ type: "refresh", token });
  }

  #schedulePing(): void {
    if (this.#o.pingIntervalMs <= 0) return;
    this.#pingTimer = this.#setTimer(() => {
      this.#pingTimer = undefined;
      this.#sendPing();
      this.#schedulePing();
    }, this.#o.pingIntervalMs);
  }

  #sendPing(): void {
    if (!this.#send({ type: "ping" }) || this.#pongTimer !== undefined) return;
    this.#pongTimer = this.#setTimer(() => {
      this.#pongTimer = undefined;
      const socket = this.#socket;
      if (!socket || this.#state !== "ready") return;
      // Unanswered: the connection is dead. Drop it now rather than wait for TCP to notice.
      this.#socketId++;
      this.#socket = undefined;
      closeQuietly(socket, PONG_LOST_CODE, "No pong");
      this.#onSocketClosed(1006, "No pong in time");
    }, this.#o.pongTimeoutMs);
  }

  #stopConnectionTimers(): void {
    for (const handle of [this.#refreshTimer, this.#pingTimer, this.#pongTimer]) {
      if (handle !== undefined) this.#clearTimer(handle);
    }
    this.#refreshTimer = this.#pingTimer = this.#pongTimer = undefined;
    this.#refreshing = undefined;
  }

  // ---- plumbing -----------------------------------------------------------------------------

  #send(frame: ClientFrame): boolean {
    const socket = this.#socket;
    if (this.#state !== "ready" || !socket) return false;
    return this.#sendRaw(socket, frame);
  }

  #sendRaw(socket: WebSocket, frame: ClientFrame): boolean {
    if (socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  #setState(to: ClientState, error?: Error): void {
    const from = this.#state;
    if (from === to || !isAllowedClientTransition(from, to)) return;
    this.#state = to;
    this.#emit("state", error ? { from, to, error } : { from, to });
  }

  #emit<K extends keyof ClientEventMap>(type: K, detail: ClientEventMap[K]): void {
    for (const listener of [...this.#listeners.get(type) ?? []]) {
      try {
        (listener as Listener<K>)(detail);
      } catch (error) {
        reportError(error); // a listener's bug must not break the connection
      }
    }
  }

  #setTimer(callback: () => void, ms: number): TimerHandle {
    const handle = this.#timers.setTimeout(() => {
      this.#timerHandles.delete(handle);
      callback();
    }, ms);
    this.#timerHandles.add(handle);
    return handle;
  }

  #clearTimer(handle: TimerHandle): void {
    this.#timerHandles.delete(handle);
    this.#timers.clearTimeout(handle);
  }

  #delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#state === "closed") return resolve();
      const off = this.on("state", ({ to }) => {
        if (to !== "closed") return;
        off();
        this.#clearTimer(handle);
        resolve();
      });
      const handle = this.#setTimer(() => {
        off();
        resolve();
      }, ms);
    });
  }

  /** GETs JSON; identical requests in flight share one (a reset asks for a thread twice). */
  #getJson(path: string, options: { allowNotFound?: boolean } = {}): Promise<unknown> {
    const key = `${options.allowNotFound ? "?" : "!"}${path}`;
    const pending = this.#requests.get(key);
    if (pending) return pending;
    const request = this.#fetchJson(new URL(path, this.#apiBase), options).finally(() => {
      this.#requests.delete(key);
    });
    this.#requests.set(key, request);
    return request;
  }

  async #fetchJson(url: URL, options: { allowNotFound?: boolean }): Promise<unknown> {
    for (let attempt = 0;; attempt++) {
      const token = await this.#tokenForAttempt();
      let response: Response;
      try {
        response = await this.#o.fetch(url, { headers: { authorization: `Bearer ${token}` } });
      } catch (error) {
        throw new HistoryRequestError(0, `GET ${url.pathname} failed: ${messageOf(error)}`, {
          cause: error,
        });
      }
      if (response.status === 401 && attempt === 0 && this.#o.getToken) {
        await response.body?.cancel();
        this.#tokenStale = true; // expired or from another boot: one fresh token, then give up
        continue;
      }
      if (response.status === 404 && options.allowNotFound) {
        await response.body?.cancel();
        return null;
      }
      if (!response.ok) {
        const text = await response.text();
        throw new HistoryRequestError(
          response.status,
          `GET ${url.pathname} answered ${response.status}: ${text.slice(0, 200)}`,
        );
      }
      return await response.json();
    }
  }
}

function query(options: PageOptions): string {
  const params = new URLSearchParams();
  if (options.limit !== undefined) params.set("limit", String(options.limit));
  if (options.before !== undefined) params.set("before", options.before);
  const text = params.toString();
  return text ? `?${text}` : "";
}

function closeQuietly(socket: WebSocket, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // already closing
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A random UUID; `crypto.randomUUID` exists only in secure contexts, so fall back. */
function randomId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}
