/**
 * Runs chats: stores the message and the run, publishes `agent_started`, drives the agent on
 * this instance (`run_driver.ts`), and ends every run exactly once, even across instances,
 * crashes and outages (`run_endings.ts`, `lease_keeper.ts`). Implements the connection
 * core's {@link RunService} port.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { Agent } from "../agent/mod.ts";
import type { EventEngine, PublishResult } from "../bus/mod.ts";
import type {
  ApproveOutcome,
  CancelOutcome,
  ChatOutcome,
  Principal,
  RunService,
} from "../connection/mod.ts";
import type { ApproveFrame, ChatFrame, RunStatus, Usage } from "../protocol/mod.ts";
import type { ChatStore, RunOutcome, RunRecord } from "../store/mod.ts";
import type { ToolRegistry } from "../tools/mod.ts";
import { ApprovalGate } from "./approval_gate.ts";
import { LeaseKeeper } from "./lease_keeper.ts";
import { driveRun } from "./run_driver.ts";
import { askBeforeRun, reportUsage } from "./run_hooks.ts";
import type { RunChoice, RunHooks } from "./run_hooks.ts";
import type { LocalRun, StopReason } from "./run_driver.ts";
import { dependencyOf, RunEndings } from "./run_endings.ts";
import type { Ending } from "./run_endings.ts";
import { EventStamper } from "./run_events.ts";

/** What a run's end reports to metrics and hooks. */
export interface RunEndReport {
  readonly status: Exclude<RunStatus, "running">;
  /** The agent's provider label (`demo`, `openai-compatible`, ...). */
  readonly provider: string;
  /** The failure code, for a failed run. */
  readonly code?: string;
  readonly usage?: Usage;
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
}

/** Hooks for metrics. */
export interface RunObserver {
  onRunStarted?(): void;
  /** Once per run, when this instance stored its terminal status. */
  onRunEnded?(report: RunEndReport): void;
  /** The ms from a run's start to its first published reply piece. */
  onFirstPiece?(ms: number, provider: string): void;
}

/** Options of {@link RunOrchestrator}. */
export interface RunOrchestratorOptions {
  readonly store: ChatStore;
  readonly engine: EventEngine;
  readonly agent: Agent;
  /** The tools the agent may call (validated, approved and run here). */
  readonly tools: ToolRegistry;
  readonly clock: Clock;
  readonly log: Logger;
  /** This instance, as recorded as the owner of its runs. */
  readonly instanceId: string;
  /** A run's lease; another instance ends it `interrupted` once it lapses. @default 10000 */
  readonly leaseMs?: number;
  /** How often unfinished endings are retried. @default 1000 */
  readonly retryIntervalMs?: number;
  /** Reply pieces within this many ms are published as one event. @default 40 */
  readonly streamFlushMs?: number;
  /** Tool output is cut to this many bytes. @default 16384 */
  readonly toolOutputMaxBytes?: number;
  /** At most this many earlier messages of a thread are given to the agent. @default 50 */
  readonly historyMessages?: number;
  /** Runs one user may have in flight (0: no limit); one more gets `too_many_runs`. @default 0 */
  readonly maxActiveRunsPerUser?: number;
  /** How long a tool call waits for a person's approval. @default 300000 */
  readonly approvalTimeoutMs?: number;
  /** How long deleting a thread waits for its run in flight to end after cancelling it. @default 5000 */
  readonly deleteWaitMs?: number;
  /** Told the dependency (from the error) when a call to it failed, so readiness probes again. */
  readonly onDependencyFailure?: (dependency: string) => void;
  readonly observer?: RunObserver;
  /** The host application's `beforeRun` and `onUsage` (docs/protocol.md#errors). */
  readonly hooks?: RunHooks;
  /** How long `beforeRun` may take before the chat is refused `unavailable`. @default 3000 */
  readonly hookTimeoutMs?: number;
}

interface LocalEntry extends LocalRun {
  done: Promise<void>;
  /** What `beforeRun` chose for this run. */
  readonly choice?: RunChoice;
}

/** Starts, drives, cancels and ends runs. */
export class RunOrchestrator implements RunService {
  #o: RunOrchestratorOptions;
  #stamper: EventStamper;
  #local = new Map<string, LocalEntry>();
  #perUser = new Map<string, number>();
  #runListeners = new Set<(userId: string) => void>();
  /** Chats stored but not yet answered (asking `beforeRun`, publishing), by run id. */
  #deciding = new Map<string, Promise<ChatOutcome>>();
  #endings: RunEndings;
  #leases: LeaseKeeper;
  #retryTimer?: Timer;
  #unsubscribeControl?: () => void;
  #started = false;
  #draining = false;

  constructor(options: RunOrchestratorOptions) {
    this.#o = options;
    this.#stamper = new EventStamper(options.clock);
    const onDependencyFailure = (error: unknown, what: string) =>
      this.#dependencyFailed(error, what);
    this.#endings = new RunEndings({
      store: options.store,
      engine: options.engine,
      onDependencyFailure,
      onStored: (ending, outcome) => this.#reportEnd(ending, outcome),
    });
    this.#leases = new LeaseKeeper({
      store: options.store,
      engine: options.engine,
      endings: this.#endings,
      clock: options.clock,
      log: options.log,
      stamper: this.#stamper,
      instanceId: options.instanceId,
      leaseMs: this.#leaseMs,
      localRunIds: () => this.#local.keys(),
      onDependencyFailure,
    });
  }

  /** Starts lease renewal, the orphan reaper, ending retries and the control channel. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#unsubscribeControl = this.#o.engine.onControl((message) => {
      if (message.type !== "cancel") return;
      const local = this.#local.get(message.runId);
      if (local && local.run.userId === message.userId) this.#stop(local, "cancelled");
    });
    this.#leases.start();
    this.#scheduleRetry();
  }

  /** Runs in flight on this instance, for one user or in all. */
  activeRunCount(userId?: string): number {
    return userId === undefined ? this.#local.size : this.#perUser.get(userId) ?? 0;
  }

  /** Registers a listener told whenever one of a user's local runs ends. */
  onRunEnded(listener: (userId: string) => void): () => void {
    this.#runListeners.add(listener);
    return () => this.#runListeners.delete(listener);
  }

  // ---- RunService ---------------------------------------------------------------------------

  async startChat(principal: Principal, chat: ChatFrame): Promise<ChatOutcome> {
    const { store } = this.#o;
    const userId = principal.userId;
    if (this.#draining) return refuse("draining", "Server is draining; reconnect and retry");
    let result;
    try {
      result = await store.beginChat({
        userId,
        chatId: chat.id,
        threadId: chat.threadId,
        text: chat.text,
        ownerInstance: this.#o.instanceId,
        leaseMs: this.#leaseMs,
        maxActiveRuns: this.#o.maxActiveRunsPerUser ?? 0,
      });
    } catch (error) {
      this.#dependencyFailed(error, "could not store a chat");
      return refuse("unavailable", "The store is unavailable; nothing was stored");
    }
    switch (result.kind) {
      case "duplicate": {
        // The original is still being decided here: answer as it will be answered.
        const deciding = this.#deciding.get(result.runId);
        const original = deciding ? await deciding : undefined;
        if (original && !original.ok) return original;
        return {
          ok: true,
          ack: {
            type: "ack",
            id: chat.id,
            threadId: result.threadId,
            runId: result.runId,
            duplicate: true,
            status: result.status,
          },
        };
      }
      case "idempotency_conflict":
        return refuse(
          "idempotency_conflict",
          "This chat id was already used with another text or thread",
        );
      case "not_found":
        return refuse("not_found", "Thread not found");
      case "thread_busy":
        return refuse("thread_busy", "A run is already in flight on this thread");
      case "too_many_runs":
        return refuse(
          "too_many_runs",
          `At most ${this.#o.maxActiveRunsPerUser} runs may be in flight at once; wait for one to end`,
        );
      case "started":
        break;
      default: {
        const never: never = result;
        throw new TypeError(`Unknown chat result ${JSON.stringify(never)}`);
      }
    }
    const deciding = this.#decide(principal, chat, result.run);
    this.#deciding.set(result.run.id, deciding);
    try {
      return await deciding;
    } finally {
      this.#deciding.delete(result.run.id);
    }
  }

  /**
   * The rest of a stored chat: ask `beforeRun` (a refusal undoes the chat), publish
   * `agent_started` and launch the run.
   */
  async #decide(principal: Principal, chat: ChatFrame, run: RunRecord): Promise<ChatOutcome> {
    const { store, engine } = this.#o;
    const userId = principal.userId;
    let choice: RunChoice | undefined;
    const beforeRun = this.#o.hooks?.beforeRun;
    if (beforeRun) {
      const verdict = await askBeforeRun(beforeRun, {
        userId,
        threadId: run.threadId,
        runId: run.id,
        chatId: chat.id,
        text: chat.text,
        newThread: chat.threadId === undefined,
      }, { clock: this.#o.clock, log: this.#o.log, timeoutMs: this.#o.hookTimeoutMs ?? 3_000 });
      if (verdict.kind !== "go") {
        // A refused chat stores nothing (docs/protocol.md#errors).
        await this.#undoChat(run);
        return verdict.kind === "refuse"
          ? { ok: false, code: "refused", message: verdict.message, refusal: verdict.code }
          : refuse("unavailable", "The chat could not be checked; nothing was stored");
      }
      choice = verdict.choice;
    }
    let published: PublishResult;
    try {
      published = await engine.publish(
        userId,
        this.#stamper.event(run, {
          name: "agent_started",
          data: { chatId: chat.id, text: chat.text },
        }),
      );
      if (!published.published) throw new Error("agent_started refused for a new run");
    } catch (error) {
      this.#dependencyFailed(error, "could not publish agent_started");
      await this.#undoChat(run);
      return refuse("unavailable", "The event engine is unavailable; nothing was stored");
    }
    try {
      await store.recordRunStart(userId, run.id, published.event.seq);
    } catch (error) {
      // The run goes on; only the message's seq stays unknown until it can be written.
      this.#dependencyFailed(error, "could not record a run's start");
    }
    this.#launch(run, choice);
    return { ok: true, ack: { type: "ack", id: chat.id, threadId: run.threadId, runId: run.id } };
  }

  async cancel(principal: Principal, runId: string): Promise<CancelOutcome> {
    let run: RunRecord | null;
    try {
      run = await this.#o.store.getRun(principal.userId, runId);
    } catch (error) {
      this.#dependencyFailed(error, "could not read a run");
      return refuse("unavailable", "The store is unavailable; try again");
    }
    if (run === null) return refuse("not_found", "Run not found");
    if (run.status !== "running") return refuse("run_finished", `Run already ${run.status}`);
    const local = this.#local.get(runId);
    if (local) {
      this.#stop(local, "cancelled");
      return { ok: true };
    }
    try {
      // The run is driven by another instance: tell every instance; its owner acts on it.
      await this.#o.engine.sendControl({ type: "cancel", userId: principal.userId, runId });
    } catch (error) {
      this.#dependencyFailed(error, "could not send a cancel");
      return refuse("unavailable", "The event engine is unavailable; try again");
    }
    return { ok: true };
  }

  async approve(principal: Principal, frame: ApproveFrame): Promise<ApproveOutcome> {
    const userId = principal.userId;
    let run: RunRecord | null;
    try {
      run = await this.#o.store.getRun(userId, frame.runId);
    } catch (error) {
      this.#dependencyFailed(error, "could not read a run");
      return refuse("unavailable", "The store is unavailable; try again");
    }
    if (run === null) return refuse("not_found", "Run not found");
    if (run.status !== "running") return refuse("run_finished", `Run already ${run.status}`);
    let result;
    try {
      result = await this.#o.engine.resolveApproval(userId, {
        runId: frame.runId,
        toolCallId: frame.toolCallId,
        approved: frame.approved,
        by: "user",
        ...(frame.reason === undefined ? {} : { reason: frame.reason }),
        ts: this.#stamper.now(),
      });
    } catch (error) {
      this.#dependencyFailed(error, "could not record an approval");
      return refuse("unavailable", "The event engine is unavailable; try again");
    }
    switch (result.outcome) {
      case "resolved":
        return { ok: true };
      case "already":
        // A client resends its answer after a reconnect: the same answer is no error.
        return result.by === "user" && result.approved === frame.approved
          ? { ok: true }
          : refuse("already_resolved", `Already decided (${result.by})`);
      case "run_ended":
        return refuse("run_finished", "The run has ended");
      case "not_found":
        return refuse("not_found", "No such approval request in this run");
      case "not_expired":
        return refuse("unavailable", "Could not record the answer; try again");
    }
  }

  /**
   * Deletes one of the user's threads: a run in flight on it is cancelled first and given a
   * moment to end, then the thread, its messages and runs are deleted and its events purged
   * from the user's log, so they are never replayed again.
   *
   * @returns false when the thread is not the user's.
   * @throws {DependencyUnavailableError} when the store or the engine cannot be reached.
   */
  async deleteThread(userId: string, threadId: string): Promise<boolean> {
    const { store, engine } = this.#o;
    const page = await store.listMessages(userId, threadId, { limit: 2 });
    if (page === null) return false;
    const running = page.items.find((message) => message.runStatus === "running")?.runId;
    if (running !== undefined) {
      await this.cancel({ userId, exp: 0 }, running).catch(() => undefined);
      await this.#whenEnded(userId, running, this.#o.deleteWaitMs ?? 5_000);
    }
    const deleted = await store.deleteThread(userId, threadId);
    if (deleted) await engine.purgeThread(userId, threadId);
    return deleted;
  }

  /** Resolves once the run is no longer running here or in the store, or after `ms`. */
  async #whenEnded(userId: string, runId: string, ms: number): Promise<void> {
    const deadline = this.#o.clock.now() + ms;
    while (this.#o.clock.now() < deadline) {
      const local = this.#local.get(runId);
      if (local) {
        await local.done;
        if (!this.#endings.has(runId)) return;
      } else {
        const run = await this.#o.store.getRun(userId, runId);
        if (run === null || (run.status !== "running" && run.endSeq !== null)) return;
      }
      await new Promise<void>((resolve) => this.#o.clock.setTimer(resolve, 50));
    }
  }

  // ---- draining -----------------------------------------------------------------------------

  /**
   * Lets the local runs finish for up to `timeoutMs`, then ends the rest `agent_failed`
   * (`shutdown`), stored and published when possible. New chats are refused from now on.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    const busy = () => this.#local.size > 0 || this.#deciding.size > 0;
    if (busy() && timeoutMs > 0) {
      let timer: Timer | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = this.#o.clock.setTimer(resolve, timeoutMs);
      });
      await Promise.race([this.#allLocalDone(), timedOut]);
      timer?.cancel();
    }
    // A chat stored before the drain began is answered (its hook has a deadline of its own).
    await this.#allDecided();
    for (const local of this.#local.values()) this.#stop(local, "shutdown");
    await this.#allLocalDone();
    await this.#endings.retry();
  }

  /** Stops every timer; runs still in flight end `shutdown`. */
  async stop(): Promise<void> {
    await this.drain(0);
    this.#leases.stop();
    this.#retryTimer?.cancel();
    this.#retryTimer = undefined;
    this.#started = false;
    this.#unsubscribeControl?.();
  }

  async #allDecided(): Promise<void> {
    while (this.#deciding.size > 0) await Promise.allSettled([...this.#deciding.values()]);
  }

  async #allLocalDone(): Promise<void> {
    await this.#allDecided();
    while (this.#local.size > 0) {
      await Promise.all([...this.#local.values()].map((l) => l.done));
    }
  }

  // ---- driving a run ------------------------------------------------------------------------

  #launch(run: RunRecord, choice: RunChoice | undefined): void {
    const local: LocalEntry = {
      run,
      controller: new AbortController(),
      done: Promise.resolve(),
      ...(choice ? { choice } : {}),
    };
    this.#local.set(run.id, local);
    this.#perUser.set(run.userId, (this.#perUser.get(run.userId) ?? 0) + 1);
    this.#o.observer?.onRunStarted?.();
    local.done = this.#drive(local).catch((error) => {
      this.#o.log.error("run driver failed", { runId: run.id, error: errorMessage(error) });
    }).finally(() => {
      this.#local.delete(run.id);
      const left = (this.#perUser.get(run.userId) ?? 1) - 1;
      if (left > 0) this.#perUser.set(run.userId, left);
      else this.#perUser.delete(run.userId);
      for (const listener of this.#runListeners) listener(run.userId);
    });
  }

  async #drive(local: LocalEntry): Promise<void> {
    const ending = await driveRun(local, {
      agent: this.#o.agent,
      tools: this.#o.tools,
      store: this.#o.store,
      engine: this.#o.engine,
      clock: this.#o.clock,
      log: this.#o.log,
      stamper: this.#stamper,
      flushMs: this.#o.streamFlushMs ?? 40,
      toolOutputMaxBytes: this.#o.toolOutputMaxBytes ?? 16_384,
      historyMessages: this.#o.historyMessages ?? 50,
      choice: local.choice,
      approvals: (run, publisher) =>
        new ApprovalGate(run, {
          engine: this.#o.engine,
          publisher,
          clock: this.#o.clock,
          stamper: this.#stamper,
          log: this.#o.log,
          timeoutMs: this.#o.approvalTimeoutMs ?? 300_000,
          onDependencyFailure: (error, what) => this.#dependencyFailed(error, what),
        }),
      onFirstPiece: (ms) => this.#o.observer?.onFirstPiece?.(ms, this.#provider),
      onDependencyFailure: (error, what) => this.#dependencyFailed(error, what),
    });
    if (ending) await this.#endings.begin(ending);
  }

  #stop(local: LocalRun, reason: StopReason): void {
    if (local.controller.signal.aborted) return;
    local.stopReason = reason;
    local.controller.abort(new DOMException(reason, "AbortError"));
  }

  // ---- helpers ------------------------------------------------------------------------------

  get #leaseMs(): number {
    return this.#o.leaseMs ?? 10_000;
  }

  get #provider(): string {
    return this.#o.agent.provider ?? "custom";
  }

  #reportEnd(ending: Ending, outcome: RunOutcome): void {
    const { userId, threadId, runId } = ending;
    const provider = this.#provider;
    this.#o.observer?.onRunEnded?.({
      status: outcome.status,
      ...(outcome.status === "failed" ? { code: outcome.error.code } : {}),
      provider,
      usage: outcome.usage,
      userId,
      threadId,
      runId,
    });
    const onUsage = this.#o.hooks?.onUsage;
    if (onUsage && outcome.usage) {
      const report = { userId, threadId, runId, status: outcome.status, usage: outcome.usage };
      reportUsage(onUsage, { ...report, provider }, this.#o.log);
    }
  }

  async #undoChat(run: RunRecord): Promise<void> {
    try {
      await this.#o.store.abandonChat(run.userId, run.id);
    } catch (error) {
      // Could not undo: end it as failed so that the id answers with a final status.
      this.#dependencyFailed(error, "could not undo a chat");
      this.#endings.park({
        userId: run.userId,
        runId: run.id,
        threadId: run.threadId,
        outcome: {
          status: "failed",
          error: { code: "unavailable", message: "The event engine was unavailable" },
          reply: "",
        },
        steps: [],
      });
    }
  }

  #scheduleRetry(): void {
    this.#retryTimer = this.#o.clock.setTimer(async () => {
      try {
        await this.#endings.retry((runId) => this.#local.has(runId));
      } catch (error) {
        this.#o.log.error("retrying endings failed", { error: errorMessage(error) });
      }
      if (this.#started) this.#scheduleRetry();
    }, this.#o.retryIntervalMs ?? 1_000);
  }

  #dependencyFailed(error: unknown, what: string): void {
    const dependency = dependencyOf(error);
    this.#o.log.warn(what, { dependency, error: errorMessage(error) });
    this.#o.onDependencyFailure?.(dependency);
  }
}

function refuse(
  code: Extract<ChatOutcome, { ok: false }>["code"],
  message: string,
): { ok: false; code: typeof code; message: string } {
  return { ok: false, code, message };
}
