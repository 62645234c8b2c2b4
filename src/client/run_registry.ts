/**
 * The runs the client follows: its chats until acknowledged (sent again after a reconnect with
 * the same id), the runs by chat id and run id, the cancels and approvals waiting to be sent,
 * and the settling of runs the stream cannot finish (after `resumed:false`, from the history).
 * It is the one writer of that bookkeeping; the transport and the stream cursor know nothing
 * of runs.
 *
 * @module
 */
import { isTerminalEventName } from "../protocol/mod.ts";
import type {
  AckFrame,
  ApproveFrame,
  ClientFrame,
  ErrorFrame,
  EventFrame,
  ReadyFrame,
  RunStatus,
} from "../protocol/mod.ts";
import { backoffDelay } from "./backoff.ts";
import type { BackoffOptions } from "./backoff.ts";
import { TrackedRun } from "./chat_run.ts";
import type { ApprovalDecision, ChatRun, PendingApproval, RunController } from "./chat_run.ts";
import {
  ApprovalRefusedError,
  ChatRefusedError,
  ClientClosedError,
  FrameTooLargeError,
  RunLostError,
} from "./errors.ts";
import { historyVerdict } from "./history.ts";
import type { HistoryApi, HistoryVerdict } from "./history.ts";
import { frameBytes } from "./frame_size.ts";
import type { TimerGroup } from "./timer_group.ts";
import type { TimerHandle } from "./timers.ts";

/** The connection as the registry uses it. */
export interface RunConnection {
  /** Sends a frame on the ready connection; `false` when not ready (nothing is sent). */
  send(frame: ClientFrame): boolean;
  /** The current connection's `ready`, while it is ready. */
  current(): ReadyFrame | undefined;
  /** The server's frame limit, in bytes (the last `ready`'s, or the default). */
  maxFrameBytes(): number;
}

/** What the registry tells the client. */
export interface RunRegistryEvents {
  /** A run became known: a chat of this client, or a run seen started elsewhere. */
  run(run: ChatRun): void;
  /** The tool calls waiting for a decision changed. */
  approvals(pending: readonly PendingApproval[]): void;
}

/** Options of {@link RunRegistry}. */
export interface RunRegistryOptions {
  readonly connection: RunConnection;
  readonly history: Pick<HistoryApi, "listMessages">;
  readonly timers: TimerGroup;
  readonly backoff: Required<BackoffOptions>;
  /** How often a chat refused with `unavailable` or `rate_limited` is retried. */
  readonly maxChatRetries: number;
  /** A chat sent on this many connections, each cut (1006) before its ack, is refused. */
  readonly maxChatAttempts: number;
  readonly events: RunRegistryEvents;
}

/** Options of {@link RunRegistry.chat}. */
export interface ChatOptions {
  /** Continue this thread; without it the server starts a new one. */
  readonly threadId?: string;
  /** The chat's idempotency key. @default a random UUID */
  readonly id?: string;
}

/** A chat (or a status check: the same chat asked again) waiting for its ack. */
interface Delivery {
  /** The run's own thread is named, so a server that forgot the chat answers `not_found`. */
  statusCheck: boolean;
  /** Refusals with a retryable code so far. */
  retries: number;
  /** Connections cut (1006) after the chat was sent on them, before its ack. */
  cuts: number;
  /** Sent on the current connection. */
  sent: boolean;
  retryTimer?: TimerHandle;
}

/** An approval decision to send until the server's decision is seen. */
interface Approval {
  readonly run: TrackedRun;
  readonly decision: ApprovalDecision;
  /** The server said another decision won: wait for its event, do not send again. */
  decidedElsewhere: boolean;
}

const RETRYABLE_CHAT_ERRORS: ReadonlySet<string> = new Set(["unavailable", "rate_limited"]);
const HISTORY_PAGE_LIMIT = 200;
const HISTORY_MAX_PAGES = 5;
const SETTLE_ATTEMPTS = 5;
const RECENTLY_SETTLED = 512;

/** The runs of one client. */
export class RunRegistry implements RunController {
  #o: RunRegistryOptions;
  #byChatId = new Map<string, TrackedRun>();
  #byRunId = new Map<string, TrackedRun>();
  #unsettled = new Set<TrackedRun>();
  /** Run ids settled lately: their late events (a replay) start no new run. */
  #recentlySettled = new Set<string>();
  #pendingCancels = new Set<string>();
  #deliveries = new Map<TrackedRun, Delivery>();
  #approvals = new Map<string, Approval>();
  /** The pending approvals last announced, as a key. */
  #approvalsShown = "";
  #closed = false;

  constructor(options: RunRegistryOptions) {
    this.#o = options;
  }

  /** The runs followed and not settled, oldest first. */
  get runs(): readonly ChatRun[] {
    return [...this.#unsettled];
  }

  /** The tool calls of every run waiting for a decision. */
  get pendingApprovals(): readonly PendingApproval[] {
    return [...this.#unsettled].flatMap((run) => run.pendingApprovals);
  }

  /** A followed run by id. */
  get(runId: string): ChatRun | undefined {
    return this.#byRunId.get(runId);
  }

  /**
   * Starts a chat: sent now when ready, else once ready.
   *
   * @throws {TypeError} When the id is already in flight.
   * @throws {FrameTooLargeError} When the frame would exceed the server's frame limit.
   */
  chat(text: string, options: ChatOptions = {}): ChatRun {
    const chatId = options.id ?? randomId();
    if (this.#byChatId.has(chatId)) {
      throw new TypeError(`Cannot send chat: id "${chatId}" is already in flight`);
    }
    const frame = { type: "chat", id: chatId, threadId: options.threadId, text } as const;
    const limit = this.#o.connection.maxFrameBytes();
    const bytes = frameBytes(frame);
    if (bytes > limit) throw new FrameTooLargeError("chat", bytes, limit);
    const run = this.#track(
      new TrackedRun(
        { local: true, chatId, userText: text, threadId: options.threadId },
        this,
      ),
    );
    this.#deliveries.set(run, { statusCheck: false, retries: 0, cuts: 0, sent: false });
    this.#o.events.run(run);
    this.#sendChat(run);
    return run;
  }

  /** Asks the server to cancel a run, known or not (sent when connected). */
  cancelRun(runId: string): void {
    const run = this.#byRunId.get(runId);
    if (run) return run.cancel();
    if (this.#closed) return;
    this.#pendingCancels.add(runId);
    this.#flushCancels();
  }

  /** {@link RunController.cancel}: a run asked to be cancelled. */
  cancel(run: TrackedRun): void {
    if (run.runId === undefined) return; // sent once the ack (or an event) names the run
    this.#pendingCancels.add(run.runId);
    this.#flushCancels();
  }

  /** {@link RunController.approve}: a run's tool call was answered. */
  approve(run: TrackedRun, decision: ApprovalDecision): void {
    const known = this.#approvals.get(decision.toolCallId);
    if (known?.decidedElsewhere) return; // the winner's event is on its way
    this.#approvals.set(decision.toolCallId, { run, decision, decidedElsewhere: false });
    this.#flushApprovals();
  }

  /** A connection is ready: settle what it will not replay, then send what waits. */
  connected(ready: ReadyFrame, options: { reset: boolean }): void {
    if (options.reset) this.#settleAfterReset(ready);
    for (const [run, delivery] of this.#deliveries) {
      this.#o.timers.clear(delivery.retryTimer);
      delivery.retryTimer = undefined;
      delivery.sent = false;
      this.#sendChat(run);
    }
    this.#flushCancels();
    this.#flushApprovals();
  }

  /**
   * The connection was lost. A chat sent on it and not acknowledged counts a cut when the
   * connection failed (1006): a chat the server cannot take (a frame over its limit, closed
   * with a 1009 that did not arrive) must not be resent forever.
   */
  disconnected(code: number): void {
    for (const [run, delivery] of [...this.#deliveries]) {
      if (delivery.sent && code === 1006) delivery.cuts++;
      delivery.sent = false;
      if (delivery.cuts < this.#o.maxChatAttempts || delivery.statusCheck) continue;
      this.#endDelivery(run);
      run.refuse(
        new ChatRefusedError(
          "undeliverable",
          `the connection was cut ${delivery.cuts} times after the chat was sent, before the ` +
            "server acknowledged it",
        ),
      );
    }
  }

  /** Delivers one new event (the stream cursor decided it is new). */
  deliver(event: EventFrame): void {
    const run = this.#runFor(event);
    if (run) {
      run.push(event);
      // A run seen started elsewhere is found by its chat id too (for a status check).
      if (run.chatId !== undefined && !this.#byChatId.has(run.chatId)) {
        this.#byChatId.set(run.chatId, run);
      }
    }
    if (isTerminalEventName(event.name)) this.#pendingCancels.delete(event.runId);
    if (event.name === "tool_approval_resolved") {
      const toolCallId = (event.data as { toolCallId?: unknown }).toolCallId;
      if (typeof toolCallId === "string") this.#approvals.delete(toolCallId);
    }
    if (event.name.startsWith("tool_approval_")) this.#announceApprovals();
  }

  /** An `ack` arrived. */
  acknowledged(ack: AckFrame): void {
    const run = this.#byChatId.get(ack.id);
    const delivery = run ? this.#deliveries.get(run) : undefined;
    if (!run || (!run.local && !delivery?.statusCheck)) return;
    const statusCheck = delivery?.statusCheck ?? false;
    this.#endDelivery(run);
    if (run.runId === undefined) this.#byRunId.set(ack.runId, run);
    run.acknowledge(ack);
    if (run.cancelRequested) this.cancel(run);
    this.#flushApprovals();
    if (run.done || !ack.duplicate || ack.status === undefined || ack.status === "running") return;
    // A repeat of a chat whose run ended: if this connection does not replay that run's
    // events, its outcome comes from the history (docs/protocol.md#resume).
    if (!statusCheck && this.#follows(run)) return;
    void this.#settleFromHistory(run, { ackStatus: ack.status });
  }

  /**
   * An `error` frame arrived.
   *
   * @returns `false` when it answers nothing the registry tracks.
   */
  refused(frame: ErrorFrame): boolean {
    const ref = frame.ref;
    if (ref === undefined) return false;
    const run = this.#byChatId.get(ref);
    const delivery = run ? this.#deliveries.get(run) : undefined;
    if (run && delivery && (run.state === "sending" || delivery.statusCheck)) {
      this.#chatRefused(run, delivery, frame);
      return true;
    }
    if (this.#pendingCancels.delete(ref) || this.#byRunId.has(ref)) return true;
    const approval = this.#approvals.get(ref);
    if (!approval) return false;
    if (frame.code === "already_resolved") {
      approval.decidedElsewhere = true; // its tool_approval_resolved settles the answer
    } else {
      this.#approvals.delete(ref);
      approval.run.refuseApproval(new ApprovalRefusedError(frame.code, ref, frame.message));
    }
    return true;
  }

  /** The thread was deleted: its runs in flight were cancelled with it. */
  threadDeleted(threadId: string): void {
    for (const run of [...this.#unsettled]) {
      if (run.threadId !== threadId) continue;
      this.#endDelivery(run);
      run.end({ status: "cancelled", text: run.text });
    }
  }

  /** The client closed: every run not settled is lost. */
  close(error: Error): void {
    this.#closed = true;
    const lost = new ClientClosedError("The client closed before the run ended", { cause: error });
    for (const run of [...this.#unsettled]) run.lose(lost);
  }

  #chatRefused(run: TrackedRun, delivery: Delivery, frame: ErrorFrame): void {
    if (frame.code === "draining") return; // the server closes with 1012; resent after reconnect
    if (RETRYABLE_CHAT_ERRORS.has(frame.code) && delivery.retries < this.#o.maxChatRetries) {
      const wait = backoffDelay(delivery.retries++, {
        ...this.#o.backoff,
        random: () => this.#o.timers.random(),
      });
      delivery.sent = false;
      delivery.retryTimer = this.#o.timers.set(() => {
        delivery.retryTimer = undefined;
        this.#sendChat(run);
      }, wait);
      return;
    }
    this.#endDelivery(run);
    if (delivery.statusCheck) {
      run.lose(new RunLostError(`The server no longer knows this run (${frame.message})`));
    } else {
      run.refuse(
        new ChatRefusedError(
          frame.code,
          frame.message,
          frame.refusal === undefined ? {} : { refusal: frame.refusal },
        ),
      );
    }
  }

  #track(run: TrackedRun): TrackedRun {
    if (run.chatId !== undefined) this.#byChatId.set(run.chatId, run);
    if (run.runId !== undefined) this.#byRunId.set(run.runId, run);
    this.#unsettled.add(run);
    void run.settled.then(() => this.#forget(run));
    return run;
  }

  #forget(run: TrackedRun): void {
    this.#unsettled.delete(run);
    this.#endDelivery(run);
    for (const [toolCallId, approval] of this.#approvals) {
      if (approval.run === run) this.#approvals.delete(toolCallId);
    }
    if (run.chatId !== undefined && this.#byChatId.get(run.chatId) === run) {
      this.#byChatId.delete(run.chatId);
    }
    this.#announceApprovals();
    if (run.runId === undefined) return;
    if (this.#byRunId.get(run.runId) === run) this.#byRunId.delete(run.runId);
    this.#pendingCancels.delete(run.runId);
    this.#recentlySettled.add(run.runId);
    if (this.#recentlySettled.size > RECENTLY_SETTLED) {
      this.#recentlySettled.delete(this.#recentlySettled.values().next().value!);
    }
  }

  #endDelivery(run: TrackedRun): void {
    const delivery = this.#deliveries.get(run);
    if (!delivery) return;
    this.#o.timers.clear(delivery.retryTimer);
    this.#deliveries.delete(run);
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
      if (!this.#deliveries.get(local)?.statusCheck) this.#endDelivery(local);
      if (local.cancelRequested) this.cancel(local);
      this.#flushApprovals();
      return local;
    }
    const run = this.#track(
      new TrackedRun({ local: false, runId: event.runId, threadId: event.threadId }, this),
    );
    this.#o.events.run(run);
    return run;
  }

  /** Whether this connection delivers the run's remaining events. */
  #follows(run: TrackedRun): boolean {
    const ready = this.#o.connection.current();
    if (!ready) return false;
    return ready.resumed || ready.activeRuns.some((active) => active.runId === run.runId);
  }

  /** After `resumed:false`: every run that is not replayed settles from the history. */
  #settleAfterReset(ready: ReadyFrame): void {
    const active = new Set(ready.activeRuns.map((run) => run.runId));
    for (const run of [...this.#unsettled]) {
      if (run.runId === undefined || active.has(run.runId)) continue; // resent, or replayed
      void this.#settleFromHistory(run, {});
    }
  }

  async #settleFromHistory(run: TrackedRun, options: { ackStatus?: RunStatus }): Promise<void> {
    for (let attempt = 0;; attempt++) {
      if (run.done || this.#closed) return;
      let verdict: HistoryVerdict | "gone";
      try {
        verdict = await this.#findInHistory(run);
      } catch (error) {
        if (attempt + 1 >= SETTLE_ATTEMPTS) {
          run.lose(
            new RunLostError("Could not read the history to settle this run", { cause: error }),
          );
          return;
        }
        await this.#o.timers.delay(
          backoffDelay(attempt, { ...this.#o.backoff, random: () => this.#o.timers.random() }),
        );
        continue;
      }
      if (run.done) return;
      if (verdict === "gone") {
        return run.lose(
          new RunLostError(
            "The server no longer has this conversation (its history was reset); the run's " +
              "outcome is unknown",
          ),
        );
      }
      if (verdict.kind === "ended") return run.end(verdict.ending);
      // Still running: its next events are published after this `ready`, so they arrive.
      if (verdict.kind === "running") return;
      return this.#settleWithoutHistory(run, options.ackStatus);
    }
  }

  /** The history does not hold the run (not in its newest pages). */
  #settleWithoutHistory(run: TrackedRun, ackStatus: RunStatus | undefined): void {
    if (ackStatus === "failed" || ackStatus === "cancelled") {
      const error = {
        code: "unknown",
        message: "The run failed while the client was disconnected",
      };
      return run.end(
        ackStatus === "failed"
          ? { status: "failed", text: run.text, error }
          : { status: "cancelled", text: run.text },
      );
    }
    if (ackStatus !== undefined || run.chatId === undefined || run.userText === undefined) {
      return run.lose(
        new RunLostError("The run ended while the client was disconnected; its reply is unknown"),
      );
    }
    // A repeat of the chat (same id, same thread) is answered with the run's status and
    // starts nothing.
    this.#deliveries.set(run, { statusCheck: true, retries: 0, cuts: 0, sent: false });
    this.#sendChat(run);
  }

  async #findInHistory(run: TrackedRun): Promise<HistoryVerdict | "gone"> {
    let before: string | undefined;
    for (let page = 0; page < HISTORY_MAX_PAGES; page++) {
      const result = await this.#o.history.listMessages(run.threadId!, {
        limit: HISTORY_PAGE_LIMIT,
        before,
      });
      if (result === null) return "gone";
      const verdict = historyVerdict(result.items, run.runId!);
      const seen = result.items.some((message) => message.runId === run.runId);
      if (verdict.kind !== "unknown" || seen || !result.nextCursor) return verdict;
      before = result.nextCursor;
    }
    return { kind: "unknown" };
  }

  #sendChat(run: TrackedRun): void {
    const delivery = this.#deliveries.get(run);
    if (!delivery || run.done || delivery.retryTimer !== undefined) return;
    if (run.state !== "sending" && !delivery.statusCheck) return;
    if (!this.#o.connection.current()) return;
    const frame = {
      type: "chat",
      id: run.chatId!,
      threadId: delivery.statusCheck ? run.threadId : run.requestedThreadId,
      text: run.userText!,
    } as const;
    const limit = this.#o.connection.maxFrameBytes();
    const bytes = frameBytes(frame);
    if (bytes > limit) {
      // The limit of this server is lower than when the chat was queued: never send it.
      this.#endDelivery(run);
      return run.refuse(new FrameTooLargeError("chat", bytes, limit));
    }
    if (this.#o.connection.send(frame)) delivery.sent = true;
  }

  #flushCancels(): void {
    if (!this.#o.connection.current()) return;
    for (const runId of this.#pendingCancels) {
      this.#o.connection.send({ type: "cancel", runId });
      if (!this.#byRunId.has(runId)) this.#pendingCancels.delete(runId); // nothing to watch
    }
  }

  #flushApprovals(): void {
    if (!this.#o.connection.current()) return;
    for (const [toolCallId, approval] of this.#approvals) {
      const runId = approval.run.runId;
      if (approval.decidedElsewhere || runId === undefined) continue;
      const frame: ApproveFrame = { type: "approve", runId, ...approval.decision };
      const limit = this.#o.connection.maxFrameBytes();
      const bytes = frameBytes(frame);
      if (bytes > limit) {
        this.#approvals.delete(toolCallId);
        const tooLarge = new FrameTooLargeError("approve", bytes, limit);
        approval.run.refuseApproval(
          new ApprovalRefusedError("frame_too_large", toolCallId, tooLarge.message),
        );
        continue;
      }
      this.#o.connection.send(frame);
    }
  }

  #announceApprovals(): void {
    const pending = this.pendingApprovals;
    const key = pending.map((approval) => approval.toolCallId).join("\n");
    if (key === this.#approvalsShown) return;
    this.#approvalsShown = key;
    this.#o.events.approvals(pending);
  }
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
