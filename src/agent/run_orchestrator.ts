/**
 * Runs chats: stores the message and the run, publishes `agent_started`, drives the agent and
 * turns its steps into events, and ends every run exactly once, even across instances, crashes
 * and outages. Implements the connection core's {@link RunService} port.
 *
 * Ending a run is a small persistent procedure (an "ending"): store the terminal status first
 * (so history holds the reply before `agent_completed` is sent), then publish the remaining
 * events in order, then record the terminal seq. An ending that cannot finish because
 * PostgreSQL or Redis is down is retried until it does, while the run's lease is kept; an
 * instance that dies leaves its runs to the orphan reaper of another instance.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine, NewEvent, PublishResult } from "../bus/mod.ts";
import type { CancelOutcome, ChatOutcome, Principal, RunService } from "../connection/mod.ts";
import type { ChatFrame, RunStatus } from "../protocol/mod.ts";
import type { ChatStore, RunOutcome, RunRecord } from "../store/mod.ts";
import type { Agent, AgentStep } from "./agent.ts";

/** Hooks for metrics. */
export interface RunObserver {
  onRunStarted?(): void;
  onRunEnded?(status: Exclude<RunStatus, "running">): void;
}

/** Options of {@link RunOrchestrator}. */
export interface RunOrchestratorOptions {
  readonly store: ChatStore;
  readonly engine: EventEngine;
  readonly agent: Agent;
  readonly clock: Clock;
  readonly log: Logger;
  /** This instance, as recorded as the owner of its runs. */
  readonly instanceId: string;
  /** A run's lease; another instance ends it `interrupted` once it lapses. @default 10000 */
  readonly leaseMs?: number;
  /** How often unfinished endings are retried. @default 1000 */
  readonly retryIntervalMs?: number;
  /** Told when a call to a dependency failed (so readiness probes again). */
  readonly onDependencyFailure?: (dependency: string) => void;
  readonly observer?: RunObserver;
}

interface LocalRun {
  readonly run: RunRecord;
  readonly controller: AbortController;
  stopReason?: "cancelled" | "shutdown";
  done: Promise<void>;
}

/** A run being ended: what is left to do, in order. */
interface Ending {
  readonly userId: string;
  readonly runId: string;
  readonly threadId: string;
  /** Set while the terminal status is not stored yet. */
  outcome?: RunOutcome;
  /** Events still to publish, the terminal one last (an `agent_started` first for an orphan). */
  events: NewEvent[];
}

/** How many events a run publishes before it yields to the event loop. */
const YIELD_EVERY_EVENTS = 32;

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

const SHUTDOWN_ERROR = {
  code: "shutdown",
  message: "The server shut down before the run finished",
} as const;

/** Starts, drives, cancels and ends runs. */
export class RunOrchestrator implements RunService {
  #o:
    & Required<Omit<RunOrchestratorOptions, "onDependencyFailure" | "observer">>
    & RunOrchestratorOptions;
  #local = new Map<string, LocalRun>();
  #endings = new Map<string, Ending>();
  #runsPerUser = new Map<string, number>();
  #runListeners = new Set<(userId: string) => void>();
  #timers = new Set<Timer>();
  #timersStopped = false;
  #unsubscribeControl?: () => void;
  #started = false;
  #stopped = false;
  #reaping = false;
  #tsAt = Number.NaN;
  #tsText = "";
  #retrying = false;

  constructor(options: RunOrchestratorOptions) {
    this.#o = { leaseMs: 10_000, retryIntervalMs: 1_000, ...options };
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
    this.#every(Math.max(250, Math.floor(this.#o.leaseMs / 3)), () => this.#renewLeases());
    this.#every(Math.max(250, Math.floor(this.#o.leaseMs / 2)), () => this.#reapOrphans());
    this.#every(this.#o.retryIntervalMs, () => this.#retryEndings());
  }

  /** Runs in flight on this instance, for one user or in all. */
  activeRunCount(userId?: string): number {
    return userId === undefined ? this.#local.size : this.#runsPerUser.get(userId) ?? 0;
  }

  /** Registers a listener told whenever one of a user's local runs ends. */
  onRunEnded(listener: (userId: string) => void): () => void {
    this.#runListeners.add(listener);
    return () => this.#runListeners.delete(listener);
  }

  // ---- RunService ---------------------------------------------------------------------------

  async startChat(principal: Principal, chat: ChatFrame): Promise<ChatOutcome> {
    const { store, engine } = this.#o;
    const userId = principal.userId;
    if (this.#stopped) return refuse("draining", "Server is draining; reconnect and retry");
    let result;
    try {
      result = await store.beginChat({
        userId,
        chatId: chat.id,
        threadId: chat.threadId,
        text: chat.text,
        ownerInstance: this.#o.instanceId,
        leaseMs: this.#o.leaseMs,
      });
    } catch (error) {
      this.#dependencyFailed("postgres", "could not store a chat", error);
      return refuse("unavailable", "The store is unavailable; nothing was stored");
    }
    switch (result.kind) {
      case "duplicate":
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
      case "idempotency_conflict":
        return refuse(
          "idempotency_conflict",
          "This chat id was already used with another text or thread",
        );
      case "not_found":
        return refuse("not_found", "Thread not found");
      case "thread_busy":
        return refuse("thread_busy", "A run is already in flight on this thread");
    }
    const run = result.run;
    let published: PublishResult;
    try {
      published = await engine.publish(userId, {
        threadId: run.threadId,
        runId: run.id,
        name: "agent_started",
        data: { chatId: chat.id, text: chat.text },
        ts: this.#ts(),
      });
      if (!published.published) throw new Error("agent_started refused for a new run");
    } catch (error) {
      this.#dependencyFailed("redis", "could not publish agent_started", error);
      await this.#undoChat(run);
      return refuse("unavailable", "The event engine is unavailable; nothing was stored");
    }
    try {
      await store.recordRunStart(userId, run.id, published.event.seq);
    } catch (error) {
      // The run goes on; only the message's seq stays unknown until it can be written.
      this.#dependencyFailed("postgres", "could not record a run's start", error);
    }
    this.#launch(run);
    return { ok: true, ack: { type: "ack", id: chat.id, threadId: run.threadId, runId: run.id } };
  }

  async cancel(principal: Principal, runId: string): Promise<CancelOutcome> {
    let run: RunRecord | null;
    try {
      run = await this.#o.store.getRun(principal.userId, runId);
    } catch (error) {
      this.#dependencyFailed("postgres", "could not read a run", error);
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
      this.#dependencyFailed("redis", "could not send a cancel", error);
      return refuse("unavailable", "The event engine is unavailable; try again");
    }
    return { ok: true };
  }

  // ---- draining -----------------------------------------------------------------------------

  /**
   * Lets the local runs finish for up to `timeoutMs`, then ends the rest `agent_failed`
   * (`shutdown`), stored and published when possible. New chats are refused from now on.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#local.size > 0 && timeoutMs > 0) {
      let timer: Timer | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = this.#o.clock.setTimer(resolve, timeoutMs);
      });
      await Promise.race([this.#allLocalDone(), timedOut]);
      timer?.cancel();
    }
    for (const local of this.#local.values()) this.#stop(local, "shutdown");
    await this.#allLocalDone();
    await this.#retryEndings();
  }

  /** Stops every timer; runs still in flight end `shutdown`. */
  async stop(): Promise<void> {
    await this.drain(0);
    this.#timersStopped = true;
    for (const timer of this.#timers) timer.cancel();
    this.#timers.clear();
    this.#unsubscribeControl?.();
  }

  async #allLocalDone(): Promise<void> {
    while (this.#local.size > 0) {
      await Promise.all([...this.#local.values()].map((l) => l.done));
    }
  }

  // ---- driving a run ------------------------------------------------------------------------

  #launch(run: RunRecord): void {
    const local: LocalRun = { run, controller: new AbortController(), done: Promise.resolve() };
    this.#local.set(run.id, local);
    this.#runsPerUser.set(run.userId, (this.#runsPerUser.get(run.userId) ?? 0) + 1);
    this.#o.observer?.onRunStarted?.();
    local.done = this.#drive(local).catch((error) => {
      this.#o.log.error("run driver failed", { runId: run.id, error: errorMessage(error) });
    }).finally(() => {
      this.#local.delete(run.id);
      const left = (this.#runsPerUser.get(run.userId) ?? 1) - 1;
      if (left > 0) this.#runsPerUser.set(run.userId, left);
      else this.#runsPerUser.delete(run.userId);
      for (const listener of this.#runListeners) listener(run.userId);
    });
  }

  #stop(local: LocalRun, reason: "cancelled" | "shutdown"): void {
    if (local.controller.signal.aborted) return;
    local.stopReason = reason;
    local.controller.abort(new DOMException(reason, "AbortError"));
  }

  async #drive(local: LocalRun): Promise<void> {
    const { run, controller } = local;
    const signal = controller.signal;
    let openTool: { toolCallId: string; tool: string } | undefined;
    let reply: string | undefined;
    let failure: { code: string; message: string } | undefined;
    let endedElsewhere = false;

    let emitted = 0;
    const emit = async (name: string, data: Record<string, unknown>): Promise<boolean> => {
      const result = await this.#o.engine.publish(run.userId, this.#event(run, name, data));
      if (!result.published) endedElsewhere = true;
      // An agent that emits as fast as it can, over an in-process engine, never leaves the
      // microtask queue: let sockets, timers and other runs have their turn now and then.
      if (++emitted % YIELD_EVERY_EVENTS === 0) await yieldToEventLoop();
      return result.published;
    };

    try {
      for await (
        const step of this.#o.agent.run(
          { userId: run.userId, threadId: run.threadId, runId: run.id, text: run.text },
          { signal },
        )
      ) {
        if (signal.aborted) break;
        const mapped = mapStep(step, openTool);
        if ("error" in mapped) {
          failure = { code: "agent_error", message: mapped.error };
          break;
        }
        if (step.kind === "reply") {
          reply = step.text;
          break;
        }
        if (!(await emit(mapped.name, mapped.data))) break;
        if (step.kind === "tool_call") openTool = { toolCallId: step.toolCallId, tool: step.tool };
        if (step.kind === "tool_result") openTool = undefined;
      }
    } catch (error) {
      if (!signal.aborted) {
        if (error instanceof DependencyUnavailableError) {
          this.#dependencyFailed("redis", "could not publish a run event", error);
          failure = { code: "unavailable", message: "The event engine became unavailable" };
        } else {
          this.#o.log.error("agent failed", { runId: run.id, error: errorMessage(error) });
          failure = { code: "agent_error", message: "The agent failed" };
        }
      }
    }
    if (endedElsewhere) return; // another instance ended it (its lease had lapsed)

    let outcome: RunOutcome;
    const events: NewEvent[] = [];
    if (local.stopReason === "cancelled") {
      if (openTool) {
        events.push(this.#toolAborted(run, openTool, "cancelled", "The run was cancelled"));
      }
      outcome = { status: "cancelled" };
    } else if (local.stopReason === "shutdown") {
      if (openTool) {
        events.push(this.#toolAborted(run, openTool, "shutdown", SHUTDOWN_ERROR.message));
      }
      outcome = { status: "failed", error: SHUTDOWN_ERROR };
    } else if (failure) {
      if (openTool) events.push(this.#toolAborted(run, openTool, failure.code, failure.message));
      outcome = { status: "failed", error: failure };
    } else if (reply !== undefined) {
      outcome = { status: "completed", reply };
    } else {
      outcome = {
        status: "failed",
        error: { code: "agent_error", message: "The agent stopped without a reply" },
      };
    }
    events.push(this.#event(run, terminalName(outcome), terminalData(outcome)));
    const ending: Ending = {
      userId: run.userId,
      runId: run.id,
      threadId: run.threadId,
      outcome,
      events,
    };
    this.#endings.set(run.id, ending);
    await this.#advance(ending);
  }

  /**
   * Moves an ending forward as far as the dependencies allow: store the status, publish the
   * events in order, record the terminal seq. Safe to call again after a failure.
   */
  async #advance(ending: Ending): Promise<void> {
    const { store, engine } = this.#o;
    if (ending.outcome) {
      let changed: boolean;
      try {
        changed = await store.finishRun(ending.userId, ending.runId, ending.outcome);
      } catch (error) {
        this.#dependencyFailed("postgres", "could not store a run's end", error);
        return; // retried
      }
      if (!changed) {
        // Another instance ended it first (the lease lapsed): its ending publishes, not ours.
        this.#endings.delete(ending.runId);
        return;
      }
      this.#o.observer?.onRunEnded?.(ending.outcome.status);
      ending.outcome = undefined;
    }
    while (ending.events.length > 0) {
      const event = ending.events[0];
      let result: PublishResult;
      try {
        result = await engine.publish(ending.userId, event);
      } catch (error) {
        this.#dependencyFailed("redis", "could not publish a run's end", error);
        return; // retried once the engine is back
      }
      ending.events.shift();
      const last = ending.events.length === 0;
      if (!result.published) {
        // The engine already holds this run's terminal event (published before a crash).
        if (result.endSeq !== undefined) await this.#recordEnd(ending, result.endSeq);
        this.#endings.delete(ending.runId);
        return;
      }
      if (event.name === "agent_started") {
        await store.recordRunStart(ending.userId, ending.runId, result.event.seq).catch(() => {});
      }
      if (last) await this.#recordEnd(ending, result.event.seq);
    }
    this.#endings.delete(ending.runId);
  }

  async #recordEnd(ending: Ending, seq: number): Promise<void> {
    try {
      await this.#o.store.recordRunEnd(ending.userId, ending.runId, seq);
    } catch (error) {
      this.#dependencyFailed("postgres", "could not record a run's terminal seq", error);
    }
  }

  // ---- background duties --------------------------------------------------------------------

  async #renewLeases(): Promise<void> {
    const runIds = [...this.#local.keys(), ...this.#endings.keys()];
    if (runIds.length === 0) return;
    try {
      await this.#o.store.renewLeases(this.#o.instanceId, runIds, this.#o.leaseMs);
    } catch (error) {
      this.#dependencyFailed("postgres", "could not renew run leases", error);
    }
  }

  async #retryEndings(): Promise<void> {
    if (this.#retrying) return;
    this.#retrying = true;
    try {
      for (const ending of [...this.#endings.values()]) {
        if (this.#local.has(ending.runId)) continue; // its driver is still on it
        await this.#advance(ending);
      }
    } finally {
      this.#retrying = false;
    }
  }

  /** Takes over runs whose owner stopped renewing their lease, and ends them. */
  async #reapOrphans(): Promise<void> {
    if (this.#reaping || this.#stopped) return;
    this.#reaping = true;
    try {
      let orphans: RunRecord[];
      try {
        orphans = await this.#o.store.claimOrphanedRuns(this.#o.instanceId, this.#o.leaseMs, 50);
      } catch (error) {
        this.#dependencyFailed("postgres", "could not claim orphaned runs", error);
        return;
      }
      for (const run of orphans) {
        if (this.#endings.has(run.id)) continue;
        const ending: Ending = {
          userId: run.userId,
          runId: run.id,
          threadId: run.threadId,
          events: await this.#orphanEvents(run),
        };
        this.#o.log.info("ending an orphaned run", { runId: run.id, status: run.status });
        if (run.status === "failed" && run.error?.code === "interrupted") {
          this.#o.observer?.onRunEnded?.("failed");
        }
        this.#endings.set(run.id, ending);
        await this.#advance(ending);
      }
    } finally {
      this.#reaping = false;
    }
  }

  /** The events that end a run its owner left behind: close an open tool call, then the end. */
  async #orphanEvents(run: RunRecord): Promise<NewEvent[]> {
    const events: NewEvent[] = [];
    if (run.startSeq === null) {
      events.push(this.#event(run, "agent_started", { chatId: run.chatId, text: run.text }));
    } else {
      try {
        const range = await this.#o.engine.readAfter(run.userId, run.startSeq - 1);
        const open = new Map<string, string>();
        for (const event of range.events) {
          if (event.runId !== run.id) continue;
          const id = String(event.data.toolCallId ?? "");
          if (event.name === "tool_executing") open.set(id, String(event.data.tool ?? ""));
          if (event.name === "tool_completed") open.delete(id);
        }
        const code = run.error?.code ?? "interrupted";
        const message = run.error?.message ?? "The run ended before the tool finished";
        for (const [toolCallId, tool] of open) {
          events.push(this.#toolAborted(run, { toolCallId, tool }, code, message));
        }
      } catch {
        // Without the log there is no open tool call to close; the terminal event still goes.
      }
    }
    const outcome: RunOutcome = run.status === "completed"
      ? { status: "completed", reply: run.reply ?? "" }
      : run.status === "cancelled"
      ? { status: "cancelled" }
      : {
        status: "failed",
        error: run.error ?? { code: "interrupted", message: "The run was interrupted" },
      };
    events.push(this.#event(run, terminalName(outcome), terminalData(outcome)));
    return events;
  }

  // ---- helpers ------------------------------------------------------------------------------

  async #undoChat(run: RunRecord): Promise<void> {
    try {
      await this.#o.store.abandonChat(run.userId, run.id);
    } catch (error) {
      // Could not undo: end it as failed so that the id answers with a final status.
      this.#dependencyFailed("postgres", "could not undo a chat", error);
      const ending: Ending = {
        userId: run.userId,
        runId: run.id,
        threadId: run.threadId,
        outcome: {
          status: "failed",
          error: { code: "unavailable", message: "The event engine was unavailable" },
        },
        events: [],
      };
      this.#endings.set(run.id, ending);
    }
  }

  #event(
    run: Pick<RunRecord, "threadId" | "id">,
    name: string,
    data: Record<string, unknown>,
  ): NewEvent {
    return { threadId: run.threadId, runId: run.id, name, data, ts: this.#ts() };
  }

  #toolAborted(
    run: Pick<RunRecord, "threadId" | "id">,
    tool: { toolCallId: string; tool: string },
    code: string,
    message: string,
  ): NewEvent {
    return this.#event(run, "tool_completed", {
      toolCallId: tool.toolCallId,
      tool: tool.tool,
      error: { code, message },
    });
  }

  #ts(): string {
    // Runs stamp many events per millisecond: format each millisecond once.
    const now = this.#o.clock.now();
    if (now !== this.#tsAt) {
      this.#tsAt = now;
      this.#tsText = new Date(now).toISOString();
    }
    return this.#tsText;
  }

  #dependencyFailed(dependency: string, what: string, error: unknown): void {
    this.#o.log.warn(what, { dependency, error: errorMessage(error) });
    this.#o.onDependencyFailure?.(dependency);
  }

  #every(ms: number, task: () => Promise<void>): void {
    const schedule = () => {
      const timer = this.#o.clock.setTimer(async () => {
        this.#timers.delete(timer);
        try {
          await task();
        } catch (error) {
          this.#o.log.error("background task failed", { error: errorMessage(error) });
        }
        if (!this.#timersStopped) schedule();
      }, ms);
      this.#timers.add(timer);
    };
    schedule();
  }
}

function refuse(
  code: Extract<ChatOutcome, { ok: false }>["code"],
  message: string,
): { ok: false; code: typeof code; message: string } {
  return { ok: false, code, message };
}

function mapStep(
  step: AgentStep,
  openTool: { toolCallId: string; tool: string } | undefined,
): { name: string; data: Record<string, unknown> } | { error: string } {
  switch (step.kind) {
    case "thinking":
      return { name: "agent_thinking", data: { text: step.text } };
    case "tool_call":
      if (openTool) return { error: "The agent started a tool call before the last one finished" };
      return {
        name: "tool_executing",
        data: { toolCallId: step.toolCallId, tool: step.tool, input: step.input },
      };
    case "tool_result":
      if (!openTool || openTool.toolCallId !== step.toolCallId) {
        return { error: "The agent returned a result for a tool call it did not make" };
      }
      return {
        name: "tool_completed",
        data: { toolCallId: step.toolCallId, tool: openTool.tool, output: step.output },
      };
    case "reply":
      if (openTool) return { error: "The agent replied while a tool call was open" };
      return { name: "agent_completed", data: { text: step.text } };
  }
}

function terminalName(outcome: RunOutcome): string {
  return outcome.status === "completed"
    ? "agent_completed"
    : outcome.status === "cancelled"
    ? "agent_cancelled"
    : "agent_failed";
}

function terminalData(outcome: RunOutcome): Record<string, unknown> {
  if (outcome.status === "completed") return { text: outcome.reply };
  if (outcome.status === "failed") return { error: outcome.error };
  return {};
}
