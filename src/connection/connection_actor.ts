/**
 * One actor per WebSocket connection. Everything that happens to a connection goes through it:
 * inbound frames and live events enter one mailbox, drained in order by one loop; timers and
 * closes are urgent messages that act at once. The actor is the only writer of the connection's
 * state and the only caller of `socket.send` and `socket.close`, and it sends nothing before
 * the socket is open and nothing but `ready` first.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock, Timer } from "../_util/clock.ts";
import { Fifo } from "../_util/fifo.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine, UserEvent } from "../bus/event_engine.ts";
import {
  CloseCode,
  closeFrameFor,
  ConnectionCloseError,
  parseClientFrame,
  truncateReason,
} from "../protocol/mod.ts";
import type {
  ApproveFrame,
  ChatFrame,
  ClientFrame,
  ErrorCode,
  EventFrame,
  HelloFrame,
  ServerFrame,
} from "../protocol/mod.ts";
import { isAllowedTransition, isLive } from "./application_connection_state.ts";
import type { ApplicationConnectionState } from "./application_connection_state.ts";
import type { HandshakeCoordinator, HandshakeResult } from "./handshake_coordinator.ts";
import { InvalidTokenError } from "./ports.ts";
import type { Principal, RunService, ServerGate, TokenVerifier } from "./ports.ts";
import type { RaceConditionDetector } from "./race_condition_detector.ts";
import { ReadinessLatches } from "./readiness_latches.ts";
import { SocketReadyState } from "./socket_port.ts";
import type { SocketPort } from "./socket_port.ts";

/** Limits of one connection (SPEC §1 defaults in brackets). */
export interface ConnectionLimits {
  /** From open to `ready`; no `hello` by then closes 4408, else 1013. [5000] */
  readonly handshakeTimeoutMs: number;
  /** A larger frame closes 1009. [65536] */
  readonly maxFrameBytes: number;
  /** Frames queued before `ready`; one more closes 4429. [64] */
  readonly maxPreReadyFrames: number;
  /** Events held in the mailbox; beyond it they are dropped and backfilled from the log. */
  readonly maxPendingEvents: number;
  /** Frames waiting after `ready` (the store is slow); one more closes 1013. */
  readonly maxPendingFrames: number;
  /**
   * Flow control: once `bufferedAmount` is above this, the actor stops sending and waits for
   * the socket to drain below half of it; events keep arriving into the (bounded) mailbox. [1 MiB]
   */
  readonly slowConsumerBytes: number;
  /** A socket that does not drain within this long is a slow consumer: closed 1013. [10000] */
  readonly slowConsumerTimeoutMs: number;
  /** Tolerance on the token's `exp`, in seconds. [5] */
  readonly clockToleranceSeconds: number;
  /** Sustained frames per second; more are answered `rate_limited`. */
  readonly rateLimitPerSecond: number;
  /** Burst allowance; a client that keeps going a whole burst past it is closed 1008. */
  readonly rateLimitBurst: number;
  /** How long to wait for the peer to answer our close before giving up on it. */
  readonly closeTimeoutMs: number;
}

/**
 * Switches for the guards that make the connection race-free. All are on by default; the test
 * suite turns each off to prove that the test guarding it fails without it.
 */
export interface ConnectionGuards {
  /** Nothing is processed, sent or closed before the socket is open. */
  readonly waitForOpen: boolean;
  /** Frames after `hello` wait in the mailbox until `ready`. */
  readonly queueBeforeReady: boolean;
  /** Live events wait in the mailbox until `ready`. */
  readonly holdEventsUntilReady: boolean;
  /** Events at or below the delivered seq are dropped; a gap is backfilled. */
  readonly dedupeBySeq: boolean;
}

/** Hooks for metrics and the connection registry. */
export interface ConnectionObserver {
  onReady?(actor: ConnectionActor, handshakeMs: number): void;
  onClosed?(actor: ConnectionActor, code: number): void;
  onEventSent?(): void;
}

/** What every actor of a process shares. */
export interface ConnectionActorDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly detector: RaceConditionDetector;
  readonly coordinator: HandshakeCoordinator;
  readonly engine: Pick<EventEngine, "readAfter">;
  readonly runs: RunService;
  readonly verifier: TokenVerifier;
  readonly gate: ServerGate;
  readonly limits: ConnectionLimits;
  readonly guards?: Partial<ConnectionGuards>;
  readonly observer?: ConnectionObserver;
}

/** What the upgrade knows about one connection. */
export interface ConnectionOptions {
  readonly connectionId?: string;
  /** From a valid `Authorization: Bearer` header, verified before the upgrade. */
  readonly headerPrincipal?: Principal;
  /** From a `bearer.<jwt>` subprotocol entry, verified in the handshake. */
  readonly protocolToken?: string;
}

type InboxItem =
  | { readonly kind: "frame"; readonly data: string }
  | { readonly kind: "binary" }
  | { readonly kind: "rate_limited"; readonly ref?: string }
  | { readonly kind: "event"; readonly event: UserEvent; readonly epoch: string }
  | { readonly kind: "gap" };

const DEFAULT_GUARDS: ConnectionGuards = {
  waitForOpen: true,
  queueBeforeReady: true,
  holdEventsUntilReady: true,
  dedupeBySeq: true,
};

const NO_OPTIONS: ConnectionOptions = {};

/** How often a congested socket's `bufferedAmount` is checked. */
const DRAIN_POLL_MS = 10;

/** The longest delay a timer can take (setTimeout's 32-bit limit). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One connection's actor. */
export class ConnectionActor {
  /** The id sent in `ready`. */
  readonly connectionId: string;
  /** Resolves as each lifecycle state is reached; see {@link ReadinessLatches}. */
  readonly readiness = new ReadinessLatches();

  #deps: ConnectionActorDeps;
  #guards: ConnectionGuards;
  #options: ConnectionOptions;
  #socket: SocketPort;
  #state: ApplicationConnectionState = "connecting";
  #closeCause?: ConnectionCloseError;
  #closeCode?: number;

  #inbox = new Fifo<InboxItem>();
  #pendingFrames = 0;
  #pendingEvents = 0;
  #gapQueued = false;
  #pumping = false;
  #congested = false;

  #helloReceived = false;
  #readySent = false;
  /** Gives back what the handshake took (subscription, connection slot); idempotent. */
  #release?: () => void;
  #principal?: Principal;
  #epoch = "";
  #lastSeq = 0;

  #openedAt = 0;
  /** Aborts the handshake; dropped once `ready` is sent (nothing listens to it after). */
  #handshakeAbort?: AbortController = new AbortController();
  #handshakeTimer?: Timer;
  #expiryTimer?: Timer;
  #closeTimer?: Timer;
  #drainTimer?: Timer;
  #closeOnOpen?: { code: number; reason: string };

  #tokens: number;
  #tokensAt = 0;

  /**
   * @param deps What every actor shares.
   * @param socket The connection's socket (not open yet).
   * @param options What the upgrade learned.
   */
  constructor(deps: ConnectionActorDeps, socket: SocketPort, options: ConnectionOptions = {}) {
    this.#deps = deps;
    this.#guards = { ...DEFAULT_GUARDS, ...deps.guards };
    this.#socket = socket;
    this.#options = options;
    this.connectionId = options.connectionId ?? crypto.randomUUID();
    this.#tokens = deps.limits.rateLimitBurst;
    this.readiness.markReached("connecting");
  }

  /** The current lifecycle state. */
  get state(): ApplicationConnectionState {
    return this.#state;
  }

  /** The user, once authenticated. */
  get userId(): string | undefined {
    return this.#principal?.userId;
  }

  /** The close code decided (by the server) or received (from the peer), once closing. */
  get closeCode(): number | undefined {
    return this.#closeCode;
  }

  // ---- messages from the socket -------------------------------------------------------------

  /** The socket opened (its `open` event). */
  opened(): void {
    if (this.#state === "connecting") {
      this.#openedAt = this.#deps.clock.now();
      this.#transition("accepted");
      this.#handshakeTimer = this.#deps.clock.setTimer(
        () => this.#onHandshakeTimeout(),
        this.#deps.limits.handshakeTimeoutMs,
      );
      void this.#pump();
      return;
    }
    if (this.#closeOnOpen) {
      // A close decided before the socket opened: now the client can be told its code.
      const { code, reason } = this.#closeOnOpen;
      this.#closeOnOpen = undefined;
      this.#closeSocket(code, reason);
    }
  }

  /** A frame arrived (the socket's `message` event). Never sends from here. */
  receive(data: unknown): void {
    if (!isLive(this.#state)) return; // the peer had not seen our close yet: not a race
    if (typeof data !== "string") {
      this.#enqueueFrame({ kind: "binary" });
      return;
    }
    if (exceedsBytes(data, this.#deps.limits.maxFrameBytes)) {
      this.#beginClose(CloseCode.MessageTooBig, "Frame too large");
      return;
    }
    if (this.#helloReceived && !this.#takeRateToken()) {
      if (!isLive(this.#state)) return;
      const parsed = parseClientFrame(data);
      const ref = parsed.ok ? refOf(parsed.frame) : parsed.ref;
      this.#enqueueFrame({ kind: "rate_limited", ref });
      return;
    }
    if (
      !this.#guards.queueBeforeReady && this.#helloReceived && this.#state !== "processing_ready"
    ) {
      // Unsafe (test-only): handle at once, as a naive server would.
      void this.#handleFrame(data);
      return;
    }
    this.#enqueueFrame({ kind: "frame", data });
  }

  /** The socket closed (its `close` event). */
  socketClosed(code: number, reason: string): void {
    if (isLive(this.#state)) this.#beginClose(code, reason, "peer");
    else if (this.#state === "closing") this.#finish();
  }

  /** The socket reported an error; its `close` event follows. */
  socketErrored(): void {
    this.#deps.log.debug("socket error", { connectionId: this.connectionId });
  }

  /** Closes the connection from the server side (drain, shutdown). */
  close(code: number, reason: string): void {
    this.#beginClose(code, reason);
  }

  /** Closes with 1012 after `delayMs` (spreads a drain's reconnects over a moment). */
  drain(delayMs: number): void {
    if (!isLive(this.#state) || this.#drainTimer) return;
    this.#drainTimer = this.#deps.clock.setTimer(
      () => this.#beginClose(CloseCode.ServiceRestart, "Server restarting"),
      delayMs,
    );
  }

  // ---- the mailbox --------------------------------------------------------------------------

  #enqueueFrame(item: InboxItem): void {
    const ready = this.#state === "processing_ready";
    const limit = ready ? this.#deps.limits.maxPendingFrames : this.#deps.limits.maxPreReadyFrames;
    if (this.#pendingFrames >= limit) {
      if (ready) this.#beginClose(CloseCode.TryAgainLater, "Too many frames in flight");
      else this.#beginClose(CloseCode.TooManyRequests, "Too many frames before ready");
      return;
    }
    this.#pendingFrames++;
    this.#inbox.push(item);
    if (!this.#pumping) void this.#pump();
  }

  #onLiveEvent(event: UserEvent, epoch: string): void {
    if (!isLive(this.#state)) return;
    if (!this.#guards.holdEventsUntilReady && this.#state !== "processing_ready") {
      // Unsafe (test-only): forward at once, as a naive server would.
      this.#sendEvent(event);
      return;
    }
    if (this.#pendingEvents >= this.#deps.limits.maxPendingEvents) {
      // Hold no more: drop it and fill the hole from the log when the mailbox gets there.
      if (!this.#gapQueued) {
        this.#gapQueued = true;
        this.#inbox.push({ kind: "gap" });
      }
      return;
    }
    this.#pendingEvents++;
    this.#inbox.push({ kind: "event", event, epoch });
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    if (this.#state === "connecting" && this.#guards.waitForOpen) return;
    this.#pumping = true;
    try {
      while (isLive(this.#state) && this.#inbox.length > 0) {
        if (this.#congested && !(await this.#drained())) break;
        const item = this.#inbox.shift()!;
        if (item.kind === "event") this.#pendingEvents--;
        else if (item.kind === "gap") this.#gapQueued = false;
        else this.#pendingFrames--;
        // The common case, the next event in seq, is sent without a promise per event.
        if (item.kind === "event" && this.#deliverNow(item.event, item.epoch)) continue;
        await this.#handle(item);
      }
      // An idle connection keeps an empty queue, not the backing store of its last burst.
      if (this.#inbox.length === 0) this.#inbox.clear();
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#pumping = false;
    }
  }

  async #handle(item: InboxItem): Promise<void> {
    if (!this.#deps.detector.checkInbound(this.#state)) return;
    switch (item.kind) {
      case "frame":
        if (!this.#helloReceived) return await this.#onFirstFrame(item.data);
        return await this.#handleFrame(item.data);
      case "binary":
        if (!this.#helloReceived) {
          return this.#beginClose(CloseCode.BadHello, "First frame must be a hello text frame");
        }
        return this.#sendError("bad_frame", "Binary frames are not supported");
      case "rate_limited":
        return this.#sendError("rate_limited", "Too many frames; slow down", item.ref);
      case "event":
        return await this.#deliver(item.event, item.epoch);
      case "gap":
        return await this.#backfill();
    }
  }

  // ---- handshake ----------------------------------------------------------------------------

  async #onFirstFrame(data: string): Promise<void> {
    const parsed = parseClientFrame(data);
    if (!parsed.ok || parsed.frame.type !== "hello") {
      this.#beginClose(CloseCode.BadHello, "First frame must be a valid hello");
      return;
    }
    this.#helloReceived = true;
    await this.#handshake(parsed.frame);
  }

  async #handshake(hello: HelloFrame): Promise<void> {
    let session: HandshakeResult;
    try {
      session = await this.#deps.coordinator.run({
        connectionId: this.connectionId,
        hello,
        headerPrincipal: this.#options.headerPrincipal,
        protocolToken: this.#options.protocolToken,
        signal: this.#handshakeAbort!.signal,
        onEvent: (event, epoch) => this.#onLiveEvent(event, epoch),
        advance: (state) => {
          if (isLive(this.#state)) this.#transition(state);
        },
      });
    } catch (error) {
      if (!isLive(this.#state)) return; // aborted because the connection is closing
      const { code, reason } = closeFrameFor(error);
      if (code === CloseCode.InternalError) this.#logFault("handshake failed", error);
      this.#beginClose(code, reason);
      return;
    }
    if (!isLive(this.#state)) {
      session.release();
      return;
    }
    // Keep only the release handle: the catch-up read (its events) is not held for the
    // connection's lifetime.
    this.#release = session.release;
    this.#principal = session.principal;
    const { catchUp } = session;
    this.#epoch = catchUp.epoch;
    this.#send({
      type: "ready",
      connectionId: this.connectionId,
      userId: session.principal.userId,
      epoch: catchUp.epoch,
      seq: catchUp.seq,
      resumed: catchUp.resumed,
      activeRuns: catchUp.activeRuns,
    });
    for (const event of catchUp.events) {
      if (event.seq > catchUp.seq) break;
      this.#sendEvent(event);
    }
    this.#lastSeq = catchUp.seq;
    this.#handshakeTimer?.cancel();
    this.#handshakeTimer = undefined;
    this.#handshakeAbort = undefined;
    this.#options = NO_OPTIONS; // a subprotocol token is not held for the connection's life
    this.#transition("processing_ready");
    this.#scheduleExpiry();
    this.#deps.observer?.onReady?.(this, this.#deps.clock.now() - this.#openedAt);
  }

  #onHandshakeTimeout(): void {
    if (this.#state === "processing_ready" || !isLive(this.#state)) return;
    if (!this.#helloReceived) this.#beginClose(CloseCode.HelloTimeout, "No hello in time");
    else this.#beginClose(CloseCode.TryAgainLater, "Handshake timed out");
  }

  // ---- after ready --------------------------------------------------------------------------

  async #handleFrame(data: string): Promise<void> {
    const parsed = parseClientFrame(data);
    if (!parsed.ok) return this.#sendError(parsed.code, parsed.message, parsed.ref);
    const frame = parsed.frame;
    switch (frame.type) {
      case "hello":
        return this.#sendError("bad_frame", "hello was already received");
      case "ping":
        this.#send({ type: "pong" });
        return;
      case "chat":
        return await this.#onChat(frame);
      case "cancel":
        return await this.#onCancel(frame.runId);
      case "approve":
        return await this.#onApprove(frame);
      case "refresh":
        return await this.#onRefresh(frame.token);
    }
  }

  async #onChat(chat: ChatFrame): Promise<void> {
    if (this.#deps.gate.draining()) {
      return this.#sendError("draining", "Server is draining; reconnect and retry", chat.id);
    }
    let outcome;
    try {
      outcome = await this.#deps.runs.startChat(this.#principal!, chat);
    } catch (error) {
      this.#logFault("chat failed", error);
      outcome = { ok: false, code: "unavailable", message: "Could not store the chat" } as const;
    }
    if (!isLive(this.#state)) return; // stored; a resent id gets the same ack
    if (outcome.ok) this.#send(outcome.ack);
    else this.#sendError(outcome.code, outcome.message, chat.id);
  }

  async #onCancel(runId: string): Promise<void> {
    let outcome;
    try {
      outcome = await this.#deps.runs.cancel(this.#principal!, runId);
    } catch (error) {
      this.#logFault("cancel failed", error);
      outcome = { ok: false, code: "unavailable", message: "Could not cancel the run" } as const;
    }
    if (!outcome.ok && isLive(this.#state)) this.#sendError(outcome.code, outcome.message, runId);
  }

  async #onApprove(frame: ApproveFrame): Promise<void> {
    let outcome;
    try {
      outcome = await this.#deps.runs.approve(this.#principal!, frame);
    } catch (error) {
      this.#logFault("approve failed", error);
      outcome = { ok: false, code: "unavailable", message: "Could not record the answer" } as const;
    }
    if (!outcome.ok && isLive(this.#state)) {
      this.#sendError(outcome.code, outcome.message, frame.toolCallId);
    }
  }

  async #onRefresh(token: string): Promise<void> {
    let principal: Principal;
    try {
      principal = await this.#deps.verifier.verify(token);
    } catch (error) {
      if (error instanceof InvalidTokenError) {
        return this.#beginClose(CloseCode.Unauthorized, "Invalid refresh token");
      }
      return this.#sendError("unavailable", "Could not verify the token; try again");
    }
    if (!isLive(this.#state)) return;
    const current = this.#principal!;
    if (principal.userId !== current.userId) {
      return this.#beginClose(CloseCode.Unauthorized, "Refresh token names another user");
    }
    if (principal.exp <= current.exp) {
      return this.#sendError("invalid_field", "Refresh token must expire later than the current");
    }
    this.#principal = principal;
    this.#scheduleExpiry();
    this.#send({ type: "refreshed", exp: principal.exp });
  }

  #scheduleExpiry(): void {
    this.#expiryTimer?.cancel();
    const { clock, limits } = this.#deps;
    const deadline = (this.#principal!.exp + limits.clockToleranceSeconds) * 1000;
    const wait = deadline - clock.now();
    this.#expiryTimer = clock.setTimer(() => {
      if (clock.now() >= deadline) this.#beginClose(CloseCode.Unauthorized, "Token expired");
      else this.#scheduleExpiry(); // a timer longer than setTimeout allows, re-armed
    }, Math.min(Math.max(wait, 0), MAX_TIMER_MS));
  }

  // ---- events -------------------------------------------------------------------------------

  async #deliver(event: UserEvent, epoch: string): Promise<void> {
    if (epoch !== this.#epoch) {
      // The user's log was reset (lost or rewound): seqs may repeat. Start over.
      return this.#beginClose(CloseCode.TryAgainLater, "Event log reset; reconnect");
    }
    if (!this.#guards.dedupeBySeq) {
      this.#sendEvent(event);
      this.#lastSeq = Math.max(this.#lastSeq, event.seq);
      return;
    }
    if (event.seq <= this.#lastSeq) return; // already sent (catch-up or backfill)
    if (event.seq > this.#lastSeq + 1) {
      await this.#backfill();
      if (!isLive(this.#state) || event.seq <= this.#lastSeq) return;
      if (event.seq !== this.#lastSeq + 1) {
        return this.#beginClose(CloseCode.TryAgainLater, "Missed events; reconnect");
      }
    }
    this.#sendEvent(event);
    this.#lastSeq = event.seq;
  }

  /**
   * Does what {@link #handle} does with an event that needs nothing awaited (it is in this
   * epoch and not past a gap), at once.
   *
   * @returns false, having done nothing, when the event needs {@link #handle}.
   */
  #deliverNow(event: UserEvent, epoch: string): boolean {
    if (!this.#guards.dedupeBySeq || epoch !== this.#epoch || event.seq > this.#lastSeq + 1) {
      return false;
    }
    if (this.#deps.detector.checkInbound(this.#state) && event.seq === this.#lastSeq + 1) {
      this.#sendEvent(event);
      this.#lastSeq = event.seq;
    } // else already sent (catch-up or backfill)
    return true;
  }

  async #backfill(): Promise<void> {
    const userId = this.#principal!.userId;
    let range;
    try {
      range = await this.#deps.engine.readAfter(userId, this.#lastSeq);
    } catch {
      return this.#beginClose(CloseCode.TryAgainLater, "Event log unavailable; resume later");
    }
    if (!isLive(this.#state)) return;
    if (range.epoch !== this.#epoch) {
      return this.#beginClose(CloseCode.TryAgainLater, "Event log reset; reconnect");
    }
    if (!range.complete) {
      return this.#beginClose(CloseCode.TryAgainLater, "Missed events; reconnect");
    }
    for (const event of range.events) {
      if (event.seq !== this.#lastSeq + 1) continue;
      if (!this.#sendEvent(event)) return;
      this.#lastSeq = event.seq;
    }
  }

  #sendEvent(event: UserEvent): boolean {
    const frame: EventFrame = {
      type: "event",
      seq: event.seq,
      threadId: event.threadId,
      runId: event.runId,
      name: event.name,
      data: event.data,
      ts: event.ts,
    };
    const sent = this.#send(frame);
    if (sent) this.#deps.observer?.onEventSent?.();
    return sent;
  }

  // ---- sending and closing ------------------------------------------------------------------

  #sendError(code: ErrorCode, message: string, ref?: string): void {
    this.#send(
      ref === undefined ? { type: "error", code, message } : { type: "error", code, message, ref },
    );
  }

  /** The only place a frame reaches the socket. */
  #send(frame: ServerFrame): boolean {
    const socket = this.#socket;
    const verdict = this.#deps.detector.checkSend(this.#state, socket.readyState, {
      isReady: frame.type === "ready",
      isEvent: frame.type === "event",
      readySent: this.#readySent,
    });
    if (verdict === "refuse") {
      this.#deps.log.warn("race refused a send", {
        connectionId: this.connectionId,
        frame: frame.type,
        state: this.#state,
      });
      return false;
    }
    if (verdict === "drop") return false;
    try {
      socket.send(JSON.stringify(frame));
    } catch {
      return false; // the socket closed under us; its close event follows
    }
    if (frame.type === "ready") this.#readySent = true;
    if (socket.bufferedAmount > this.#deps.limits.slowConsumerBytes) this.#congested = true;
    return true;
  }

  /**
   * Waits, polling on the clock, until the socket has drained below half the high-water mark.
   * A socket that does not drain in time belongs to a client that stopped reading: it is
   * closed 1013, so it resumes from its last seq, and memory stays bounded meanwhile (the
   * mailbox holds a bounded number of events and backfills the rest from the log).
   *
   * @returns Whether the connection may go on.
   */
  async #drained(): Promise<boolean> {
    const { clock, limits } = this.#deps;
    const deadline = clock.now() + limits.slowConsumerTimeoutMs;
    while (this.#socket.bufferedAmount > limits.slowConsumerBytes / 2) {
      if (!isLive(this.#state)) return false;
      if (clock.now() >= deadline) {
        this.#beginClose(CloseCode.TryAgainLater, "Slow consumer; resume");
        return false;
      }
      await delay(clock, DRAIN_POLL_MS);
    }
    this.#congested = false;
    return isLive(this.#state);
  }

  #takeRateToken(): boolean {
    const { clock, limits } = this.#deps;
    const now = clock.now();
    const elapsed = (now - this.#tokensAt) / 1000;
    this.#tokensAt = now;
    this.#tokens = Math.min(
      limits.rateLimitBurst,
      this.#tokens + elapsed * limits.rateLimitPerSecond,
    );
    this.#tokens -= 1;
    if (this.#tokens >= 0) return true;
    if (this.#tokens <= -limits.rateLimitBurst) {
      this.#beginClose(CloseCode.PolicyViolation, "Repeated abuse: too many frames");
    }
    return false;
  }

  #fail(error: unknown): void {
    const { code, reason } = closeFrameFor(error);
    if (code === CloseCode.InternalError) this.#logFault("connection fault", error);
    this.#beginClose(code, reason);
  }

  #logFault(message: string, error: unknown): void {
    this.#deps.log.error(message, {
      connectionId: this.connectionId,
      error: errorMessage(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
  }

  /**
   * Decides to close: records the cause once, stops every timer and the handshake, gives back
   * the subscription and the connection slot, and closes the socket (once it is open).
   */
  #beginClose(code: number, reason: string, origin: "server" | "peer" = "server"): void {
    if (!isLive(this.#state)) return;
    this.#closeCode = code;
    // The cause is seen only by what is still pending: the handshake (as its abort reason) and
    // the readiness milestones not reached yet. Past `ready` there is neither, and making an
    // Error (its stack trace) was the costliest step of a close.
    if (this.#state !== "processing_ready") {
      this.#closeCause = new ConnectionCloseError(code as CloseCode, reason);
    }
    this.#transition("closing");
    this.#handshakeAbort?.abort(this.#closeCause);
    this.#handshakeTimer?.cancel();
    this.#expiryTimer?.cancel();
    this.#drainTimer?.cancel();
    this.#release?.();
    this.#inbox.clear();
    this.#pendingEvents = 0;
    this.#pendingFrames = 0;
    if (origin === "peer") {
      this.#finish();
      return;
    }
    const readyState = this.#socket.readyState;
    if (readyState === SocketReadyState.Connecting && this.#guards.waitForOpen) {
      this.#closeOnOpen = { code, reason };
    } else if (readyState === SocketReadyState.Open || readyState === SocketReadyState.Connecting) {
      this.#closeSocket(code, reason);
    }
    this.#closeTimer = this.#deps.clock.setTimer(
      () => this.#finish(),
      this.#deps.limits.closeTimeoutMs,
    );
  }

  #closeSocket(code: number, reason: string): void {
    if (!this.#deps.detector.checkClose(this.#socket.readyState)) {
      // Refused before open (a race, counted) or already closing: its close event follows.
      if (this.#socket.readyState !== SocketReadyState.Connecting) return;
    }
    try {
      this.#socket.close(code, truncateReason(reason));
    } catch (error) {
      this.#deps.log.debug("socket close failed", { error: errorMessage(error) });
      this.#finish();
    }
  }

  #finish(): void {
    if (this.#state !== "closing") return;
    this.#closeTimer?.cancel();
    this.#transition("closed");
    this.#deps.observer?.onClosed?.(this, this.#closeCode ?? CloseCode.Normal);
  }

  /** The single state writer. */
  #transition(to: ApplicationConnectionState): void {
    const from = this.#state;
    if (!isAllowedTransition(from, to)) {
      this.#deps.detector.recordInvalidTransition(from, to);
      return;
    }
    this.#state = to;
    this.readiness.markReached(to, this.#closeCause);
  }
}

/** The `ref` of an error answering `frame`: a chat's id or a cancel's runId. */
function refOf(frame: ClientFrame): string | undefined {
  if (frame.type === "chat") return frame.id;
  if (frame.type === "cancel") return frame.runId;
  if (frame.type === "approve") return frame.toolCallId;
  return undefined;
}

const encoder = new TextEncoder();

/** Whether `text` is longer than `limit` bytes in UTF-8, without encoding short strings. */
function exceedsBytes(text: string, limit: number): boolean {
  if (text.length * 3 <= limit) return false;
  if (text.length > limit) return true;
  return encoder.encode(text).length > limit;
}
