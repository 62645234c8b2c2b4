/**
 * The agent port (v2): what runs behind a chat. An agent gets the thread's history, a tool
 * handle and a signal, and yields steps: pieces of its reply, reasoning, usage, or a typed
 * failure. The run orchestrator turns the steps into events, runs every tool call the agent
 * asks for (validation, approval, events, cancellation), stores the reply and ends the run,
 * so an agent never touches the protocol, the store or the engine.
 *
 * @module
 */
import type { ErrorInfo, Json, RunFailureCode, RunStatus, ToolErrorCode } from "../protocol/mod.ts";

/** One earlier turn of the thread, as text. */
export interface Turn {
  readonly role: "user" | "assistant";
  readonly text: string;
  /** The status of the turn's run (an assistant turn of a failed run holds its partial text). */
  readonly runStatus: RunStatus;
}

/** A tool as a model sees it. */
export interface ToolSpec {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the input object. */
  readonly inputSchema: { readonly [key: string]: Json };
}

/** What a tool call came back with, as the agent (and its model) sees it. */
export type ToolCallResult =
  | {
    readonly ok: true;
    readonly toolCallId: string;
    readonly output: Json;
    /** The output as text for a model: cut to the output limit, and marked when cut. */
    readonly text: string;
  }
  | {
    readonly ok: false;
    readonly toolCallId: string;
    readonly error: ErrorInfo & { readonly code: ToolErrorCode };
    /** The error as text for a model (a denial's reason included). */
    readonly text: string;
  };

/** How an agent runs tools; the orchestrator validates, asks for approval, publishes and runs. */
export interface ToolHandle {
  /** The tools this run may call. */
  readonly specs: readonly ToolSpec[];
  /**
   * Runs one tool call and resolves once it completed. A tool's own failure (bad input, a
   * throw, a denial) resolves with `ok: false`. Calls may overlap.
   *
   * @throws The run's abort reason, when the run is cancelled or shut down meanwhile.
   */
  call(name: string, input: unknown): Promise<ToolCallResult>;
}

/** Everything an agent gets for one run. */
export interface AgentRequest {
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
  /** The user's message. */
  readonly text: string;
  /** The thread's earlier turns, oldest first (this run's message excluded). */
  readonly history: readonly Turn[];
  /** Runs the tools this run may call. */
  readonly tools: ToolHandle;
  /** Aborted on cancel, at the drain timeout, and whenever the run must stop. */
  readonly signal: AbortSignal;
  /** The model for this run, when a `beforeRun` hook chose one; the agent's default otherwise. */
  readonly model?: string;
  /** The system prompt for this run, when a `beforeRun` hook chose one. */
  readonly systemPrompt?: string;
}

/** One step of an agent's work, in the order it happens. */
export type AgentStep =
  /**
   * A new model call begins: text after it is a new part of the reply, and the orchestrator
   * separates it from an earlier call's text with a `"\n\n"` piece. Agents that make no
   * model calls never yield it.
   */
  | { readonly kind: "model_call" }
  /** A piece of the reply, streamed: published as `agent_delta`, coalesced. */
  | { readonly kind: "text"; readonly text: string }
  /**
   * The whole reply at once, for an agent that does not stream: no `agent_delta` is
   * published. An agent yields either `text` pieces or one `reply`, never both.
   */
  | { readonly kind: "reply"; readonly text: string }
  /**
   * Reasoning, published as `agent_thinking`. `delta: false` starts a block and `true`
   * extends it (a model's streamed reasoning); an agent that thinks in whole thoughts yields
   * each with `delta: false`.
   */
  | { readonly kind: "thinking"; readonly text: string; readonly delta: boolean }
  /** The usage of one model call; the orchestrator sums a run's calls. */
  | {
    readonly kind: "usage";
    readonly inputTokens: number;
    readonly outputTokens: number;
    /** Why that call stopped (`stop`, `tool-calls`, `length`, ...). */
    readonly finishReason?: string;
  }
  /** The agent cannot go on: the run ends `agent_failed` with this code. The last step. */
  | {
    readonly kind: "failed";
    readonly code: RunFailureCode;
    readonly message: string;
    readonly retryAfterMs?: number;
  };

/**
 * An agent. It yields steps and returns when done; what it yielded is the reply. It stops
 * promptly when `request.signal` aborts (the orchestrator ignores anything after that).
 */
export interface Agent {
  /** Names the agent's model provider in metrics (`demo`, `openai-compatible`, ...). */
  readonly provider?: string;
  /** Runs one chat. */
  run(request: AgentRequest): AsyncIterable<AgentStep>;
}
