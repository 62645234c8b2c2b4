/**
 * Drives one run on this instance, in four steps that read apart: load the thread's history,
 * run the agent (its tool calls go through a {@link ToolRunner}), check each step it yields
 * against the agent contract and publish it, and finally work out how the run ended and the
 * events that end it, which the run's ending (`run_endings.ts`) stores and publishes.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { Agent, AgentStep, Turn } from "../agent/mod.ts";
import type { EventEngine, NewEvent } from "../bus/mod.ts";
import type { ApprovalDecider, ErrorInfo, RunFailureCode, Usage } from "../protocol/mod.ts";
import type { ChatStore, RunOutcome, RunRecord } from "../store/mod.ts";
import type { ToolRegistry } from "../tools/mod.ts";
import { publishSteps } from "./run_endings.ts";
import type { Ending, EndingStep } from "./run_endings.ts";
import type { EventStamper } from "./run_events.ts";
import { RunPublisher } from "./run_publisher.ts";
import { ToolRunner } from "./tool_runner.ts";
import type { ApprovalPort, OpenCall } from "./tool_runner.ts";

/** Why a run was told to stop. */
export type StopReason = "cancelled" | "shutdown";

/** A run driven by this instance. */
export interface LocalRun {
  readonly run: RunRecord;
  readonly controller: AbortController;
  /** Set when the run was told to stop; the driver ends it accordingly. */
  stopReason?: StopReason;
}

/** What driving a run needs. */
export interface RunDriverDeps {
  readonly agent: Agent;
  readonly tools: ToolRegistry;
  readonly store: Pick<ChatStore, "threadHistory">;
  readonly engine: Pick<EventEngine, "publish" | "publishMany">;
  readonly clock: Clock;
  readonly log: Logger;
  readonly stamper: EventStamper;
  /** Pieces within this many ms are published as one event. */
  readonly flushMs: number;
  /** Tool output is cut to this many bytes. */
  readonly toolOutputMaxBytes: number;
  /** At most this many earlier messages of the thread are given to the agent. */
  readonly historyMessages: number;
  /** Asks for approval of this run's calls (the gate publishes through the run's publisher). */
  readonly approvals?: (run: RunRecord, publisher: RunPublisher) => ApprovalPort;
  /** Chosen by a `beforeRun` hook for this run. */
  readonly choice?: { readonly model?: string; readonly systemPrompt?: string };
  /** Told when the run's first reply piece was published, with the ms since it started. */
  readonly onFirstPiece?: (ms: number) => void;
  /** Told when a dependency failed. */
  readonly onDependencyFailure: (error: unknown, what: string) => void;
}

/** How the run's agent part went, before the ending is worked out. */
interface AgentResult {
  /** The whole reply of an agent that does not stream. */
  reply?: string;
  failure?: ErrorInfo & { code: RunFailureCode };
  usage?: { inputTokens: number; outputTokens: number };
  finishReason?: string;
  /** The agent made at least one model call (an empty reply is then a reply). */
  modelCalls: number;
}

const SHUTDOWN_ERROR = {
  code: "shutdown",
  message: "The server shut down before the run finished",
} as const;

/**
 * Drives a run to its end.
 *
 * @returns The run's ending, to store and publish; `null` when another instance already
 *   ended it (its lease had lapsed).
 */
export async function driveRun(local: LocalRun, deps: RunDriverDeps): Promise<Ending | null> {
  const { run, controller } = local;
  const signal = controller.signal;
  const startedAt = deps.clock.now();
  let firstPiece = true;
  const publisher = new RunPublisher(
    { id: run.id, userId: run.userId, threadId: run.threadId },
    {
      engine: deps.engine,
      clock: deps.clock,
      stamper: deps.stamper,
      flushMs: deps.flushMs,
      confirmedSeq: run.startSeq ?? 0,
      onPublished: ({ event }) => {
        if (firstPiece && event.name === "agent_delta") {
          firstPiece = false;
          deps.onFirstPiece?.(deps.clock.now() - startedAt);
        }
      },
    },
  );
  const tools = new ToolRunner(run, {
    registry: deps.tools,
    publisher,
    signal,
    outputMaxBytes: deps.toolOutputMaxBytes,
    approvals: deps.approvals?.(run, publisher),
  });

  let result: AgentResult;
  const history = await loadHistory(run, deps);
  if (history === undefined) {
    result = {
      modelCalls: 0,
      failure: { code: "unavailable", message: "The thread's history could not be read" },
    };
  } else {
    result = await runAgent(local, { deps, publisher, tools, history });
  }

  const left = await publisher.close();
  if (publisher.stopped?.kind === "ended_elsewhere") return null;
  if (publisher.stopped?.kind === "failed" && !result.failure && !local.stopReason) {
    deps.onDependencyFailure(publisher.stopped.error, "could not publish a run event");
    result.failure = { code: "unavailable", message: "The event engine became unavailable" };
  }
  const outcome = outcomeOf(local, result, publisher.reply);
  const steps: EndingStep[] = publishSteps(left.events);
  const closing = closingOf(local, outcome);
  const ts = deps.stamper.now();
  for (const call of tools.takeOpen()) {
    if (call.phase === "approval") {
      steps.push({
        kind: "resolve",
        decision: {
          runId: run.id,
          toolCallId: call.toolCallId,
          approved: false,
          by: closing.decider,
          ts,
        },
      });
    }
    steps.push({ kind: "publish", event: toolClosed(deps.stamper, run, call, closing.error) });
  }
  steps.push({ kind: "publish", event: terminalEvent(deps.stamper, run, outcome) });
  return {
    userId: run.userId,
    runId: run.id,
    threadId: run.threadId,
    outcome,
    steps,
    confirmedSeq: left.confirmedSeq,
    uncertain: left.uncertain,
  };
}

/** The thread's earlier turns as text, oldest first; undefined when the store failed. */
async function loadHistory(run: RunRecord, deps: RunDriverDeps): Promise<Turn[] | undefined> {
  try {
    const turns = await deps.store.threadHistory(run.userId, run.threadId, {
      beforeRunId: run.id,
      limit: deps.historyMessages,
    });
    return turns ?? [];
  } catch (error) {
    deps.onDependencyFailure(error, "could not read a thread's history");
    return undefined;
  }
}

/** Runs the agent, checking and publishing each step, until it returns, fails or stops. */
async function runAgent(
  local: LocalRun,
  context: {
    deps: RunDriverDeps;
    publisher: RunPublisher;
    tools: ToolRunner;
    history: readonly Turn[];
  },
): Promise<AgentResult> {
  const { deps, publisher, tools, history } = context;
  const { run, controller } = local;
  const signal = controller.signal;
  const result: AgentResult = { modelCalls: 0 };
  const rules = new StepRules();
  try {
    const steps = deps.agent.run({
      userId: run.userId,
      threadId: run.threadId,
      runId: run.id,
      text: run.text,
      history,
      tools,
      signal,
      model: deps.choice?.model,
      systemPrompt: deps.choice?.systemPrompt,
    });
    for await (const step of steps) {
      if (signal.aborted || publisher.stopped) break;
      const broken = rules.check(step);
      if (broken) {
        result.failure = { code: "agent_error", message: broken };
        break;
      }
      switch (step.kind) {
        case "model_call":
          result.modelCalls++;
          break;
        case "text":
          if (rules.needsSeparator()) publisher.text("\n\n");
          publisher.text(step.text);
          break;
        case "reply":
          result.reply = step.text;
          break;
        case "thinking":
          publisher.thinking(step.text, step.delta);
          break;
        case "usage":
          result.usage = {
            inputTokens: (result.usage?.inputTokens ?? 0) + tokens(step.inputTokens),
            outputTokens: (result.usage?.outputTokens ?? 0) + tokens(step.outputTokens),
          };
          if (step.finishReason !== undefined) result.finishReason = step.finishReason;
          break;
        case "failed":
          result.failure = {
            code: step.code,
            message: step.message,
            ...(step.retryAfterMs === undefined ? {} : { retryAfterMs: step.retryAfterMs }),
          };
          break;
        default: {
          const never: never = step;
          throw new TypeError(`Unknown agent step ${JSON.stringify(never)}`);
        }
      }
      if (result.failure) break;
      // An agent that emits faster than events get published waits here (back-pressure), so
      // its events are stamped close to when they go out and never pile up in memory.
      if (publisher.full) await publisher.whenRoom();
    }
  } catch (error) {
    if (!signal.aborted) {
      deps.log.error("agent failed", { runId: run.id, error: errorMessage(error) });
      result.failure = { code: "agent_error", message: "The agent failed" };
    }
  }
  return result;
}

/**
 * The agent contract, step by step: a streamed reply (`text`) and a whole one (`reply`) do
 * not mix, a whole reply comes once, and `"\n\n"` separates two model calls' texts.
 */
class StepRules {
  #replied = false;
  #texted = false;
  #boundary = false;

  /** @returns Why `step` breaks the contract, or undefined. */
  check(step: AgentStep): string | undefined {
    switch (step.kind) {
      case "model_call":
        this.#boundary = this.#texted;
        return undefined;
      case "text":
        if (this.#replied) return "The agent streamed text after its whole reply";
        return undefined;
      case "reply":
        if (this.#replied) return "The agent replied twice";
        if (this.#texted) return "The agent sent a whole reply after streaming one";
        this.#replied = true;
        return undefined;
      default:
        return undefined;
    }
  }

  /** Call before publishing a `text` step: whether a `"\n\n"` piece must go first. */
  needsSeparator(): boolean {
    const separate = this.#boundary;
    this.#boundary = false;
    this.#texted = true;
    return separate;
  }
}

function tokens(value: number): number {
  return Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

/** How the run ended, from its stop reason, its agent's result and its reply so far. */
function outcomeOf(local: LocalRun, result: AgentResult, streamed: string): RunOutcome {
  const usage = result.usage;
  const reply = result.reply ?? streamed;
  const withUsage = usage ? { usage } : {};
  if (local.stopReason === "cancelled") return { status: "cancelled", reply, ...withUsage };
  if (local.stopReason === "shutdown") {
    return { status: "failed", error: SHUTDOWN_ERROR, reply, ...withUsage };
  }
  if (result.failure) return { status: "failed", error: result.failure, reply, ...withUsage };
  if (result.reply === undefined && streamed === "" && result.modelCalls === 0) {
    return {
      status: "failed",
      error: { code: "agent_error", message: "The agent stopped without a reply" },
      reply,
      ...withUsage,
    };
  }
  return {
    status: "completed",
    reply,
    ...withUsage,
    ...(result.finishReason === undefined ? {} : { finishReason: result.finishReason }),
  };
}

/**
 * How an open tool call is closed when its run ends: the decider of a pending approval and
 * the error its `tool_completed` carries.
 */
function closingOf(
  local: LocalRun,
  outcome: RunOutcome,
): { decider: ApprovalDecider; error: ErrorInfo } {
  if (local.stopReason === "cancelled") {
    return { decider: "cancelled", error: { code: "cancelled", message: "The run was cancelled" } };
  }
  if (local.stopReason === "shutdown") return { decider: "shutdown", error: SHUTDOWN_ERROR };
  return {
    decider: "cancelled",
    error: {
      code: "run_ended",
      message: outcome.status === "failed"
        ? `The run failed (${outcome.error.code}) before the call completed`
        : "The run ended before the call completed",
    },
  };
}

function toolClosed(
  stamper: EventStamper,
  run: RunRecord,
  call: OpenCall,
  error: ErrorInfo,
): NewEvent {
  return stamper.event(run, {
    name: "tool_completed",
    data: { toolCallId: call.toolCallId, tool: call.tool, error },
  });
}

/** The run's terminal event for `outcome`. */
export function terminalEvent(
  stamper: EventStamper,
  run: Pick<RunRecord, "id" | "threadId">,
  outcome: RunOutcome,
): NewEvent {
  const usage: { usage?: Usage } = outcome.usage ? { usage: outcome.usage } : {};
  switch (outcome.status) {
    case "completed":
      return stamper.event(run, {
        name: "agent_completed",
        data: {
          text: outcome.reply,
          ...usage,
          ...(outcome.finishReason === undefined ? {} : { finishReason: outcome.finishReason }),
        },
      });
    case "failed":
      return stamper.event(run, {
        name: "agent_failed",
        data: { text: outcome.reply, error: outcome.error, ...usage },
      });
    case "cancelled":
      return stamper.event(run, {
        name: "agent_cancelled",
        data: { text: outcome.reply, ...usage },
      });
  }
}
