/**
 * A run as the client sees it: started by {@link AgentSocketClient.chat}, or by another
 * connection of the same user (another tab), and followed until it settles. It exposes the
 * reply so far, its pieces as they come, its tool calls and the approvals they wait for.
 *
 * @module
 */
import { asRunEvent } from "../protocol/mod.ts";
import type { AckFrame, EventFrame, Usage } from "../protocol/mod.ts";
import {
  ApprovalRefusedError,
  ChatRefusedError,
  ClientClosedError,
  RunFailedError,
  RunLostError,
} from "./errors.ts";
import { RunProgress } from "./run_progress.ts";
import type { ApprovalResolution, RunEnding, RunPiece, RunStep, ToolCall } from "./run_progress.ts";

/**
 * Where a run stands on the client.
 *
 * - `sending`: the chat is not acknowledged yet (it is resent after a reconnect).
 * - `running`: acknowledged, or seen running; events flow.
 * - `completed`, `failed`, `cancelled`: the run ended (from its terminal event, or from the
 *   server's history after a reset).
 * - `refused`: the chat was refused (by the server, or by the client before sending); no run.
 * - `lost`: the run's outcome cannot be known (the server lost it, or the client closed).
 */
export type ChatRunState =
  | "sending"
  | "running"
  | "completed"
  | "failed"
  | "cancelled"
  | "refused"
  | "lost";

/** How a run settled; `settled` resolves with it and never rejects. */
export interface ChatRunOutcome {
  readonly state: Exclude<ChatRunState, "sending" | "running">;
  /** The reply, when `completed`. */
  readonly reply?: string;
  /** Why it did not complete. */
  readonly error?: Error;
}

/** A tool call waiting for a person's decision, with the run to answer through. */
export interface PendingApproval {
  readonly run: ChatRun;
  readonly runId: string;
  readonly threadId: string;
  readonly toolCallId: string;
  readonly tool: string;
  readonly input: ToolCall["input"];
  /** ISO 8601 UTC, from the server's clock: then the server decides `timeout`. */
  readonly expiresAt: string;
}

/** A run followed by the client. Its events arrive exactly once, in seq order. */
export interface ChatRun extends AsyncIterable<EventFrame> {
  /** The chat id (idempotency key); `undefined` for a run seen only from the middle. */
  readonly chatId: string | undefined;
  /** The user's message, when known. */
  readonly userText: string | undefined;
  /** `true` when this client sent the chat. */
  readonly local: boolean;
  /** Set by the ack (or the run's first event). */
  readonly runId: string | undefined;
  /** The thread: the one asked for, then the one the ack names. */
  readonly threadId: string | undefined;
  /** The seq of the run's `agent_started`, once seen. */
  readonly startSeq: number | undefined;
  readonly state: ChatRunState;
  /** The events delivered so far, in seq order (at most 10000 are kept). */
  readonly events: readonly EventFrame[];
  /**
   * The reply so far: the pieces, then the terminal event's `data.text`, which replaces them
   * (for a run settled from the history, the stored reply, partial when it failed).
   */
  readonly text: string;
  /** The reasoning so far (its blocks separated by a blank line). */
  readonly reasoning: string;
  /** The reasoning blocks and tool calls, in the order they began (for a timeline). */
  readonly steps: readonly RunStep[];
  /** The tool calls, in the order they first appeared, each with its approval state. */
  readonly toolCalls: readonly ToolCall[];
  /** The tool calls waiting for a decision (see {@link ChatRun.approve}). */
  readonly pendingApprovals: readonly PendingApproval[];
  /** Tokens used, once the terminal event said. */
  readonly usage: Usage | undefined;
  /** Why it did not complete, once settled. */
  readonly error: Error | undefined;
  /** Resolves with the ack; rejects with {@link ChatRefusedError} or when the run is lost. */
  readonly accepted: Promise<AckFrame>;
  /**
   * Resolves with the reply (`agent_completed`'s `data.text`, or the stored reply after a
   * reset); rejects with {@link RunFailedError}, {@link ChatRefusedError},
   * {@link RunLostError} or {@link ClientClosedError}.
   */
  readonly reply: Promise<string>;
  /** Resolves once the run settles, whichever way; never rejects. */
  readonly settled: Promise<ChatRunOutcome>;
  /**
   * The reply's and the reasoning's pieces, each exactly once, from the first (whenever the
   * iteration starts) to the run's end; reconnects and resumes included.
   */
  pieces(): AsyncIterableIterator<RunPiece>;
  /**
   * Calls `listener` after every change (an event, the ack, the settlement).
   *
   * @returns A function that removes it.
   */
  onChange(listener: () => void): () => void;
  /** Asks the server to cancel the run (sent once acknowledged and connected). */
  cancel(): void;
  /**
   * Answers a tool call's approval request: sends
   * `{"type":"approve","runId","toolCallId","approved","reason"?}` once connected (again after
   * a reconnect, until the decision is seen). The first decision wins, from any tab or the
   * timeout.
   *
   * @returns Resolves with the decision that won (maybe another tab's, or the timeout's).
   * @throws {TypeError} When `toolCallId` is empty or `reason` is not a string.
   * @throws {ApprovalRefusedError} (rejection) When the server does not know the tool call, the
   *   run ended before a decision, or the reason would not fit in a frame.
   */
  approve(toolCallId: string, approved: boolean, reason?: string): Promise<ApprovalResolution>;
}

/** A decision to send. */
export interface ApprovalDecision {
  readonly toolCallId: string;
  readonly approved: boolean;
  readonly reason?: string;
}

/** What a {@link TrackedRun} asks of the client that tracks it. */
export interface RunController {
  /** `run.cancel()` was called (once). */
  cancel(run: TrackedRun): void;
  /** `run.approve()` was called with a decision not seen resolved yet. */
  approve(run: TrackedRun, decision: ApprovalDecision): void;
}

/** What a new {@link TrackedRun} is known by. */
export interface TrackedRunInit {
  /** `true` for a chat of this client. */
  readonly local: boolean;
  readonly chatId?: string;
  readonly userText?: string;
  readonly runId?: string;
  readonly threadId?: string;
}

const MAX_EVENTS_PER_RUN = 10_000;

/**
 * The client's record of one run; the only writer of its state. Only the run registry calls
 * its mutating methods.
 * @internal
 */
export class TrackedRun implements ChatRun {
  readonly local: boolean;
  /** The thread named in the chat frame as first sent (resent unchanged). */
  readonly requestedThreadId: string | undefined;
  readonly accepted: Promise<AckFrame>;
  readonly reply: Promise<string>;
  readonly settled: Promise<ChatRunOutcome>;
  #ids: { chatId?: string; runId?: string; threadId?: string; userText?: string };
  #state: ChatRunState;
  #events: EventFrame[] = [];
  #progress = new RunProgress();
  #startSeq?: number;
  #error?: Error;
  #cancelRequested = false;
  #accepted = Promise.withResolvers<AckFrame>();
  #reply = Promise.withResolvers<string>();
  #settled = Promise.withResolvers<ChatRunOutcome>();
  #approvals = new Map<string, PromiseWithResolvers<ApprovalResolution>>();
  #listeners = new Set<() => void>();
  #controller: RunController;

  constructor(init: TrackedRunInit, controller: RunController) {
    this.local = init.local;
    this.#ids = {
      chatId: init.chatId,
      runId: init.runId,
      threadId: init.threadId,
      userText: init.userText,
    };
    this.requestedThreadId = init.local ? init.threadId : undefined;
    this.#state = init.runId === undefined ? "sending" : "running";
    this.#controller = controller;
    this.accepted = this.#accepted.promise;
    this.reply = this.#reply.promise;
    this.settled = this.#settled.promise;
    // Deno exits and browsers log on an unhandled rejection; awaiters still see it.
    this.accepted.catch(() => {});
    this.reply.catch(() => {});
  }

  get chatId(): string | undefined {
    return this.#ids.chatId;
  }

  get userText(): string | undefined {
    return this.#ids.userText;
  }

  get runId(): string | undefined {
    return this.#ids.runId;
  }

  get threadId(): string | undefined {
    return this.#ids.threadId;
  }

  get startSeq(): number | undefined {
    return this.#startSeq;
  }

  get state(): ChatRunState {
    return this.#state;
  }

  get events(): readonly EventFrame[] {
    return this.#events;
  }

  get text(): string {
    return this.#progress.text;
  }

  get reasoning(): string {
    return this.#progress.reasoning;
  }

  get steps(): readonly RunStep[] {
    return this.#progress.steps;
  }

  get toolCalls(): readonly ToolCall[] {
    return this.#progress.toolCalls;
  }

  get pendingApprovals(): readonly PendingApproval[] {
    const { runId, threadId } = this.#ids;
    if (this.done || runId === undefined || threadId === undefined) return [];
    return this.#progress.awaitingApproval.map((call) => ({
      run: this,
      runId,
      threadId,
      toolCallId: call.toolCallId,
      tool: call.tool,
      input: call.input,
      expiresAt: call.approval?.expiresAt ?? "",
    }));
  }

  get usage(): Usage | undefined {
    return this.#progress.ending?.usage;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  /** Whether the run has settled. */
  get done(): boolean {
    return !(this.#state === "sending" || this.#state === "running");
  }

  /** Whether `cancel()` was asked for (the registry sends it once the run id is known). */
  get cancelRequested(): boolean {
    return this.#cancelRequested;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  cancel(): void {
    if (this.done || this.#cancelRequested) return;
    this.#cancelRequested = true;
    this.#controller.cancel(this);
  }

  approve(toolCallId: string, approved: boolean, reason?: string): Promise<ApprovalResolution> {
    if (typeof toolCallId !== "string" || toolCallId === "") {
      throw new TypeError('Cannot approve: "toolCallId" must be a non-empty string');
    }
    if (reason !== undefined && typeof reason !== "string") {
      throw new TypeError('Cannot approve: "reason" must be a string when given');
    }
    const resolution = this.#progress.toolCall(toolCallId)?.approval?.resolution;
    if (resolution) return Promise.resolve(resolution);
    if (this.done) {
      return Promise.reject(
        new ApprovalRefusedError("run_finished", toolCallId, "the run has ended"),
      );
    }
    let waiter = this.#approvals.get(toolCallId);
    if (!waiter) {
      waiter = Promise.withResolvers<ApprovalResolution>();
      waiter.promise.catch(() => {});
      this.#approvals.set(toolCallId, waiter);
    }
    const decision = reason === undefined
      ? { toolCallId, approved }
      : { toolCallId, approved, reason };
    this.#controller.approve(this, decision);
    return waiter.promise;
  }

  /** The ack arrived (or a repeat of it). */
  acknowledge(ack: AckFrame): void {
    this.#ids.runId = ack.runId;
    this.#ids.threadId = ack.threadId;
    if (this.#state === "sending") this.#state = "running";
    this.#accepted.resolve(ack);
    this.#changed();
  }

  /** The run's id became known from its events (the ack may come later, or never). */
  bind(event: EventFrame): void {
    this.#ids.runId = event.runId;
    this.#ids.threadId = event.threadId;
    if (this.#state === "sending") this.#state = "running";
    this.#resolveAccepted(); // the server has the run, whether or not its ack arrives
  }

  /** Delivers one event; a terminal event settles the run. */
  push(frame: EventFrame): void {
    if (this.#ids.runId === undefined) this.bind(frame);
    if (this.#events.length < MAX_EVENTS_PER_RUN) this.#events.push(frame);
    const event = asRunEvent(frame); // names this version does not know are ignored
    if (event && !this.done) {
      if (event.name === "agent_started") {
        this.#startSeq ??= event.seq;
        this.#ids.chatId ??= event.data.chatId;
        this.#ids.userText ??= event.data.text;
      }
      this.#progress.apply(event);
      if (event.name === "tool_approval_resolved") {
        const { toolCallId, approved, by, reason } = event.data;
        this.#approvals.get(toolCallId)?.resolve(
          reason === undefined ? { approved, by } : { approved, by, reason },
        );
        this.#approvals.delete(toolCallId);
      }
      const ending = this.#progress.ending;
      if (ending) return this.#settle(ending);
    }
    this.#changed();
  }

  /** Settles from the history or an ack's status: the stored (partial) reply replaces the text. */
  end(ending: RunEnding): void {
    if (this.done) return;
    this.#progress.end(ending);
    this.#settle(this.#progress.ending!);
  }

  /** Settles as refused (no run exists). */
  refuse(error: ChatRefusedError): void {
    if (this.done) return;
    this.#state = "refused";
    this.#accepted.reject(error);
    this.#reply.reject(error);
    this.#finish({ state: "refused", error });
  }

  /** Settles as lost: the outcome cannot be known. */
  lose(error: RunLostError | ClientClosedError): void {
    if (this.done) return;
    this.#state = "lost";
    this.#accepted.reject(error);
    this.#reply.reject(error);
    this.#finish({ state: "lost", error });
  }

  /** The server refused an `approve` of this run. */
  refuseApproval(error: ApprovalRefusedError): void {
    this.#approvals.get(error.toolCallId)?.reject(error);
    this.#approvals.delete(error.toolCallId);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<EventFrame> {
    let index = 0;
    for (;;) {
      while (index < this.#events.length) yield this.#events[index++];
      if (this.done) {
        const outcome = await this.settled;
        if (outcome.state === "refused" || outcome.state === "lost") throw outcome.error;
        return;
      }
      await this.#nextChange();
    }
  }

  async *pieces(): AsyncIterableIterator<RunPiece> {
    let index = 0;
    for (;;) {
      const pieces = this.#progress.pieces;
      while (index < pieces.length) yield pieces[index++];
      if (this.done) {
        const outcome = await this.settled;
        if (outcome.state === "refused" || outcome.state === "lost") throw outcome.error;
        return;
      }
      await this.#nextChange();
    }
  }

  #settle(ending: RunEnding): void {
    this.#state = ending.status;
    this.#resolveAccepted();
    if (ending.status === "completed") {
      this.#reply.resolve(ending.text);
      this.#finish({ state: "completed", reply: ending.text });
      return;
    }
    const error = new RunFailedError(
      ending.status,
      ending.status === "cancelled"
        ? "The run was cancelled"
        : ending.error?.message ?? "The run failed",
      { info: ending.error, text: ending.text },
    );
    this.#reply.reject(error);
    this.#finish({ state: ending.status, error });
  }

  #resolveAccepted(): void {
    const { chatId, runId, threadId } = this.#ids;
    if (runId === undefined || threadId === undefined) return;
    this.#accepted.resolve({ type: "ack", id: chatId ?? "", threadId, runId });
  }

  #finish(outcome: ChatRunOutcome): void {
    this.#error = outcome.error;
    for (const [toolCallId, waiter] of this.#approvals) {
      waiter.reject(new ApprovalRefusedError("run_finished", toolCallId, "the run has ended"));
    }
    this.#approvals.clear();
    this.#settled.resolve(outcome);
    this.#changed();
  }

  #nextChange(): Promise<void> {
    return new Promise((resolve) => {
      const off = this.onChange(() => {
        off();
        resolve();
      });
    });
  }

  #changed(): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        reportError(error);
      }
    }
  }
}
