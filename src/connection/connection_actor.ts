/**
 * One actor per WebSocket connection. Everything that happens to a connection goes through it:
 * inbound frames and live events enter one mailbox, drained in order by one loop; timers and
 * closes are urgent messages that act at once. The actor is the only writer of the connection's
 * state and the only caller of `socket.send` and `socket.close`, and it sends nothing before
 * the socket is open and nothing but `ready` first.
 *
 * Its parts each hold one piece of state with one writer: the {@link Mailbox}, the
 * {@link EventCursor} (both delivery paths: reads and live events), {@link FlowControl}, the
 * {@link TokenBucket} and the {@link CloseLinger}.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine, UserEvent } from "../bus/mod.ts";
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
import { CloseLinger } from "./close_linger.ts";
import { SAFE_GUARDS } from "./connection_guards.ts";
import type { ConnectionGuards } from "./connection_guards.ts";
import { EventCursor } from "./event_cursor.ts";
import { FlowControl } from "./flow_control.ts";
import type { HandshakeCoordinator, HandshakeResult } from "./handshake_coordinator.ts";
import { Mailbox } from "./mailbox.ts";
import type { MailItem } from "./mailbox.ts";
import { InvalidTokenError } from "./ports.ts";
import type { Principal, RunService, ServerGate, TokenVerifier } from "./ports.ts";
import type { RaceConditionDetector } from "./race_condition_detector.ts";
import { ReadinessLatches } from "./readiness_latches.ts";
import { SocketReadyState } from "./socket_port.ts";
import type { SocketPort } from "./socket_port.ts";
import { TokenBucket } from "./token_bucket.ts";

/** Limits of one connection (`docs/protocol.md#limits` defaults in brackets). */
export interface ConnectionLimits {
  /** From open to `ready`; no `hello` by then closes 4408, else 1013. [5000] */
  readonly handshakeTimeoutMs: number;
  /** A larger frame closes 1009; sent in `ready` as `maxFrameBytes`. [65536] */
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
  /**
   * A close decided while the peer is still sending waits until it has sent nothing for this
   * long, so that the close code reaches it (see {@link CloseLinger}); 0 closes at once.
   * @default 250
   */
  readonly closeLingerMs?: number;
  /** The longest a close waits for the peer to go quiet. @default 1000 */
  readonly closeLingerMaxMs?: number;
}

/** Hooks for metrics and the connection registry. */
export interface ConnectionObserver {
  onReady?(actor: ConnectionActor, handshakeMs: number): void;
  /** `code` is the server's {@link CloseCode}, or whatever code the peer closed with. */
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
  /** @default SAFE_GUARDS (only the test seams pass another) */
  readonly guards?: ConnectionGuards;
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

/** What only the handshake needs; dropped once `ready` is sent. */
interface Handshake {
  readonly options: ConnectionOptions;
  /** Aborted when the connection closes before `ready`. */
  readonly abort: AbortController;
  hello: "awaited" | "received";
  openedAt: number;
  timer?: Timer;
}

/**
 * The close, once decided by the server (with a {@link CloseCode}) or received from the peer
 * (whatever code it sent: any number).
 */
type Closing =
  | {
    readonly origin: "server";
    readonly code: CloseCode;
    readonly reason: string;
    /** Seen by what is still pending before `ready`: the handshake and the readiness latches. */
    readonly cause?: ConnectionCloseError;
    /** What the close frame waits for: the socket to open, or the peer to go quiet. */
    wait?: "open" | "quiet";
    /** The linger's timer, while `wait` is `quiet`. */
    timer?: Timer;
    /** Finishes the close if the peer never answers. */
    readonly deadline: Timer;
  }
  | { readonly origin: "peer"; readonly code: number; readonly cause?: undefined };

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
  #socket: SocketPort;
  #state: ApplicationConnectionState = "connecting";
  #closing?: Closing;
  #handshake?: Handshake;

  #mailbox = new Mailbox();
  #cursor = new EventCursor();
  #flow: FlowControl;
  #bucket: TokenBucket;
  #linger: CloseLinger;

  #principal?: Principal;
  /** Gives back what the handshake took (subscription, connection slot); idempotent. */
  #release?: () => void;
  #expiryTimer?: Timer;
  #drainTimer?: Timer;

  /**
   * @param deps What every actor shares.
   * @param socket The connection's socket (not open yet).
   * @param options What the upgrade learned.
   */
  constructor(deps: ConnectionActorDeps, socket: SocketPort, options: ConnectionOptions = {}) {
    const { clock, limits } = deps;
    this.#deps = deps;
    this.#guards = deps.guards ?? SAFE_GUARDS;
    this.#socket = socket;
    this.connectionId = options.connectionId ?? crypto.randomUUID();
    this.#handshake = { options, abort: new AbortController(), hello: "awaited", openedAt: 0 };
    this.#flow = new FlowControl({
      clock,
      highWaterBytes: limits.slowConsumerBytes,
      drainTimeoutMs: limits.slowConsumerTimeoutMs,
    });
    this.#bucket = new TokenBucket({
      perSecond: limits.rateLimitPerSecond,
      burst: limits.rateLimitBurst,
    });
    this.#linger = new CloseLinger({
      quietMs: limits.closeLingerMs ?? 250,
      maxMs: limits.closeLingerMaxMs ?? 1_000,
    });
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
    return this.#closing?.code;
  }

  // ---- messages from the socket -------------------------------------------------------------

  /** The socket opened (its `open` event). */
  opened(): void {
    if (this.#state === "connecting") {
      const handshake = this.#handshake!;
      handshake.openedAt = this.#deps.clock.now();
      this.#transition("accepted");
      handshake.timer = this.#deps.clock.setTimer(
        () => this.#onHandshakeTimeout(),
        this.#deps.limits.handshakeTimeoutMs,
      );
      void this.#pump();
      return;
    }
    // A close decided before the socket opened: now the client can be told its code.
    if (this.#closing?.origin === "server" && this.#closing.wait === "open") this.#sendClose();
  }

  /** A frame arrived (the socket's `message` event). Never sends from here. */
  receive(data: unknown): void {
    this.#linger.frameArrived(this.#deps.clock.now());
    if (!isLive(this.#state)) return; // the peer had not seen our close yet: not a race
    if (typeof data !== "string") {
      this.#enqueueFrame({ kind: "binary" });
      return;
    }
    if (exceedsBytes(data, this.#deps.limits.maxFrameBytes)) {
      this.#closeWith(CloseCode.MessageTooBig, "Frame too large");
      return;
    }
    if (this.#helloReceived) {
      const verdict = this.#bucket.take(this.#deps.clock.now());
      if (verdict === "abusive") {
        this.#closeWith(CloseCode.PolicyViolation, "Repeated abuse: too many frames");
        return;
      }
      if (verdict === "limited") {
        const parsed = parseClientFrame(data);
        this.#enqueueFrame({
          kind: "rate_limited",
          ref: parsed.ok ? refOf(parsed.frame) : parsed.ref,
        });
        return;
      }
      if (!this.#guards.queueBeforeReady && this.#state !== "processing_ready") {
        void this.#handleBeforeReady(data); // guard off (test seams only)
        return;
      }
    }
    this.#enqueueFrame({ kind: "frame", data });
  }

  /** The socket closed (its `close` event); `code` is whatever the peer (or Deno) reported. */
  socketClosed(code: number, reason: string): void {
    if (isLive(this.#state)) {
      this.#deps.log.debug("peer closed", { connectionId: this.connectionId, code, reason });
      this.#enterClosing({ origin: "peer", code });
      this.#finish();
    } else if (this.#state === "closing") this.#finish();
  }

  /** The socket reported an error; its `close` event follows. */
  socketErrored(): void {
    this.#deps.log.debug("socket error", { connectionId: this.connectionId });
  }

  /** Closes the connection from the server side (drain, shutdown, an upgrade refused). */
  close(code: CloseCode, reason: string): void {
    this.#closeWith(code, reason);
  }

  /** Closes with 1012 after `delayMs` (spreads a drain's reconnects over a moment). */
  drain(delayMs: number): void {
    if (!isLive(this.#state) || this.#drainTimer) return;
    this.#drainTimer = this.#deps.clock.setTimer(
      () => this.#closeWith(CloseCode.ServiceRestart, "Server restarting"),
      delayMs,
    );
  }

  // ---- the mailbox --------------------------------------------------------------------------

  get #helloReceived(): boolean {
    return this.#handshake === undefined || this.#handshake.hello === "received";
  }

  #enqueueFrame(item: Exclude<MailItem, { kind: "event" | "gap" }>): void {
    const ready = this.#state === "processing_ready";
    const limit = ready ? this.#deps.limits.maxPendingFrames : this.#deps.limits.maxPreReadyFrames;
    if (!this.#mailbox.pushFrame(item, limit)) {
      if (ready) this.#closeWith(CloseCode.TryAgainLater, "Too many frames in flight");
      else this.#closeWith(CloseCode.TooManyRequests, "Too many frames before ready");
      return;
    }
    if (!this.#mailbox.running) void this.#pump();
  }

  #onLiveEvent(event: UserEvent, epoch: string): void {
    if (!isLive(this.#state)) return;
    if (!this.#guards.holdEventsUntilReady && this.#state !== "processing_ready") {
      this.#sendEvent(event); // guard off (test seams only): forwarded at once
      return;
    }
    this.#mailbox.pushEvent(event, epoch, this.#deps.limits.maxPendingEvents);
    if (!this.#mailbox.running) void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#state === "connecting" && this.#guards.waitForOpen) return;
    if (!this.#mailbox.claim()) return;
    try {
      while (isLive(this.#state) && this.#mailbox.length > 0) {
        if (this.#flow.congested && !(await this.#drained())) break;
        const item = this.#mailbox.shift()!;
        // The common case, the next event in seq, is sent without a promise per event.
        if (item.kind === "event" && this.#deliverNow(item.event, item.epoch)) continue;
        await this.#handle(item);
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#mailbox.release();
    }
  }

  async #handle(item: MailItem): Promise<void> {
    switch (item.kind) {
      case "frame":
        if (!this.#helloReceived) return await this.#onFirstFrame(item.data);
        return await this.#handleFrame(item.data);
      case "binary":
        if (!this.#helloReceived) {
          return this.#closeWith(CloseCode.BadHello, "First frame must be a hello text frame");
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

  /**
   * Guard `queue_before_ready` off (test seams only): handles a frame as soon as the user is
   * known, before `ready`, as a naive server would; the detector then counts what it sends.
   */
  async #handleBeforeReady(data: string): Promise<void> {
    try {
      await this.readiness.whenReached("authenticated");
    } catch {
      return; // closed before the user was known
    }
    try {
      await this.#handleFrame(data);
    } catch (error) {
      this.#fail(error);
    }
  }

  // ---- handshake ----------------------------------------------------------------------------

  async #onFirstFrame(data: string): Promise<void> {
    const parsed = parseClientFrame(data);
    if (!parsed.ok || parsed.frame.type !== "hello") {
      this.#closeWith(CloseCode.BadHello, "First frame must be a valid hello");
      return;
    }
    this.#handshake!.hello = "received";
    await this.#runHandshake(parsed.frame);
  }

  async #runHandshake(hello: HelloFrame): Promise<void> {
    const handshake = this.#handshake!;
    let session: HandshakeResult;
    try {
      session = await this.#deps.coordinator.run({
        connectionId: this.connectionId,
        hello,
        headerPrincipal: handshake.options.headerPrincipal,
        protocolToken: handshake.options.protocolToken,
        signal: handshake.abort.signal,
        onEvent: (event, epoch) => this.#onLiveEvent(event, epoch),
        advance: (state, principal) => {
          if (!isLive(this.#state)) return;
          this.#principal = principal;
          this.#transition(state);
        },
      });
    } catch (error) {
      if (!isLive(this.#state)) return; // aborted because the connection is closing
      const { code, reason } = closeFrameFor(error);
      if (code === CloseCode.InternalError) this.#logFault("handshake failed", error);
      this.#closeWith(code, reason);
      return;
    }
    if (!isLive(this.#state)) {
      session.release();
      return;
    }
    // Keep only the release handle: the catch-up read (its events) is not held for the
    // connection's lifetime, nor is a subprotocol token.
    this.#release = session.release;
    this.#principal = session.principal;
    handshake.timer?.cancel();
    this.#handshake = undefined;
    const { catchUp } = session;
    const events = this.#cursor.begin(catchUp);
    this.#send({
      type: "ready",
      connectionId: this.connectionId,
      userId: session.principal.userId,
      epoch: catchUp.epoch,
      seq: catchUp.seq,
      resumed: catchUp.resumed,
      activeRuns: catchUp.activeRuns,
      maxFrameBytes: this.#deps.limits.maxFrameBytes,
    });
    this.#transition("processing_ready");
    for (const event of events) this.#sendEvent(event);
    this.#scheduleExpiry();
    this.#deps.observer?.onReady?.(this, this.#deps.clock.now() - handshake.openedAt);
  }

  #onHandshakeTimeout(): void {
    if (this.#state === "processing_ready" || !isLive(this.#state)) return;
    if (!this.#helloReceived) this.#closeWith(CloseCode.HelloTimeout, "No hello in time");
    else this.#closeWith(CloseCode.TryAgainLater, "Handshake timed out");
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
    else this.#sendError(outcome.code, outcome.message, chat.id, outcome.refusal);
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
        return this.#closeWith(CloseCode.Unauthorized, "Invalid refresh token");
      }
      return this.#sendError("unavailable", "Could not verify the token; try again");
    }
    if (!isLive(this.#state)) return;
    const current = this.#principal!;
    if (principal.userId !== current.userId) {
      return this.#closeWith(CloseCode.Unauthorized, "Refresh token names another user");
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
      if (clock.now() >= deadline) this.#closeWith(CloseCode.Unauthorized, "Token expired");
      else this.#scheduleExpiry(); // a timer longer than setTimeout allows, re-armed
    }, Math.min(Math.max(wait, 0), MAX_TIMER_MS));
  }

  // ---- events: both paths through the one cursor (docs/protocol.md#resume) -----------------

  async #deliver(event: UserEvent, epoch: string): Promise<void> {
    if (!this.#guards.dedupeBySeq) {
      this.#sendEvent(event); // guard off (test seams only): every event, duplicates included
      this.#cursor.delivered(event.seq);
      return;
    }
    let verdict = this.#cursor.classify(event, epoch);
    if (verdict === "gap") {
      await this.#backfill();
      if (!isLive(this.#state)) return;
      verdict = this.#cursor.classify(event, epoch);
      if (verdict === "gap") {
        return this.#closeWith(CloseCode.TryAgainLater, "Missed events; reconnect");
      }
    }
    if (verdict === "reset") {
      // The user's log was reset (lost or rewound): seqs may repeat. Start over.
      return this.#closeWith(CloseCode.TryAgainLater, "Event log reset; reconnect");
    }
    if (verdict === "deliver" && this.#sendEvent(event)) this.#cursor.delivered(event.seq);
  }

  /**
   * Does what {@link #deliver} does with an event that needs nothing awaited (the next one, or
   * a duplicate), at once.
   *
   * @returns false, having done nothing, when the event needs {@link #deliver}.
   */
  #deliverNow(event: UserEvent, epoch: string): boolean {
    if (!this.#guards.dedupeBySeq) return false;
    const verdict = this.#cursor.classify(event, epoch);
    if (verdict === "duplicate") return true;
    if (verdict !== "deliver") return false;
    if (this.#sendEvent(event)) this.#cursor.delivered(event.seq);
    return true;
  }

  async #backfill(): Promise<void> {
    let range;
    try {
      range = await this.#deps.engine.readAfter(this.#principal!.userId, this.#cursor.seq);
    } catch {
      return this.#closeWith(CloseCode.TryAgainLater, "Event log unavailable; resume later");
    }
    if (!isLive(this.#state)) return;
    const outcome = this.#cursor.applyRange(range);
    if (!outcome.ok) {
      return outcome.reason === "reset"
        ? this.#closeWith(CloseCode.TryAgainLater, "Event log reset; reconnect")
        : this.#closeWith(CloseCode.TryAgainLater, "Missed events; reconnect");
    }
    for (const event of outcome.events) {
      if (!this.#sendEvent(event)) return;
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

  #sendError(code: ErrorCode, message: string, ref?: string, refusal?: string): void {
    this.#send({
      type: "error",
      code,
      message,
      ...(ref === undefined ? {} : { ref }),
      ...(refusal === undefined ? {} : { refusal }),
    });
  }

  /** The only place a frame reaches the socket. */
  #send(frame: ServerFrame): boolean {
    const socket = this.#socket;
    const verdict = this.#deps.detector.checkSend(this.#state, socket.readyState, {
      isReady: frame.type === "ready",
      isEvent: frame.type === "event",
      // `ready` is sent in services_ready, and the state moves on right after it.
      readySent: this.#state === "processing_ready",
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
    this.#flow.sent(socket.bufferedAmount);
    return true;
  }

  /**
   * Waits until a congested socket drains. One that does not drain in time belongs to a client
   * that stopped reading: it is closed 1013, so it resumes from its last seq, and memory stays
   * bounded meanwhile (the mailbox holds a bounded number of events and backfills the rest).
   *
   * @returns Whether the connection may go on.
   */
  async #drained(): Promise<boolean> {
    const outcome = await this.#flow.drained(
      () => this.#socket.bufferedAmount,
      () => isLive(this.#state),
    );
    if (outcome === "timed_out") this.#closeWith(CloseCode.TryAgainLater, "Slow consumer; resume");
    return outcome === "drained";
  }

  #fail(error: unknown): void {
    const { code, reason } = closeFrameFor(error);
    if (code === CloseCode.InternalError) this.#logFault("connection fault", error);
    this.#closeWith(code, reason);
  }

  #logFault(message: string, error: unknown): void {
    this.#deps.log.error(message, {
      connectionId: this.connectionId,
      error: errorMessage(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
  }

  /**
   * The server decides to close: records the code once, cleans up, and sends the close frame
   * once the socket is open and the peer has gone quiet.
   */
  #closeWith(code: CloseCode, reason: string): void {
    if (!isLive(this.#state)) return;
    const { clock, limits } = this.#deps;
    const decidedAt = clock.now();
    // The cause is seen only by what is still pending: the handshake (as its abort reason) and
    // the readiness milestones not reached yet. Past `ready` there is neither, and making an
    // Error (its stack trace) was the costliest step of a close.
    const closing: Closing = {
      origin: "server",
      code,
      reason,
      cause: this.#state === "processing_ready"
        ? undefined
        : new ConnectionCloseError(code, reason),
      deadline: clock.setTimer(() => this.#finish(), limits.closeTimeoutMs),
    };
    this.#enterClosing(closing);
    const readyState = this.#socket.readyState;
    if (readyState === SocketReadyState.Connecting && this.#guards.waitForOpen) {
      closing.wait = "open";
      return;
    }
    if (readyState !== SocketReadyState.Open && readyState !== SocketReadyState.Connecting) return;
    const linger = (ms: number) => {
      if (ms === 0) return this.#sendClose();
      closing.wait = "quiet";
      closing.timer = clock.setTimer(() => linger(this.#linger.waitMs(clock.now(), decidedAt)), ms);
    };
    linger(this.#linger.waitMs(decidedAt, decidedAt));
  }

  /** Sends the close frame of a server close, once nothing it waits for is left. */
  #sendClose(): void {
    const closing = this.#closing;
    if (closing?.origin !== "server" || this.#state !== "closing") return;
    closing.wait = undefined;
    this.#closeSocket(closing.code, closing.reason);
  }

  /** Records the close once and stops everything the connection holds. */
  #enterClosing(closing: Closing): void {
    this.#closing = closing;
    this.#transition("closing");
    this.#handshake?.abort.abort(closing.cause);
    this.#handshake?.timer?.cancel();
    this.#expiryTimer?.cancel();
    this.#drainTimer?.cancel();
    this.#release?.();
    this.#mailbox.clear();
  }

  #closeSocket(code: CloseCode, reason: string): void {
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
    const closing = this.#closing!;
    if (closing.origin === "server") {
      closing.timer?.cancel();
      closing.deadline.cancel();
    }
    this.#transition("closed");
    this.#deps.observer?.onClosed?.(this, closing.code);
  }

  /** The single state writer. */
  #transition(to: ApplicationConnectionState): void {
    const from = this.#state;
    if (!isAllowedTransition(from, to)) {
      this.#deps.detector.recordInvalidTransition(from, to);
      return;
    }
    this.#state = to;
    this.readiness.markReached(to, this.#closing?.cause);
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
