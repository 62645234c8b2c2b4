/**
 * The agent port: what runs behind a chat. An agent yields steps; the run orchestrator turns
 * them into events, stores the reply and handles cancellation, so an agent never touches the
 * protocol, the store or the engine.
 *
 * @module
 */

/** One step of an agent's work, in the order it happens. */
export type AgentStep =
  | { readonly kind: "thinking"; readonly text: string }
  | {
    readonly kind: "tool_call";
    readonly toolCallId: string;
    readonly tool: string;
    readonly input: Record<string, unknown>;
  }
  | {
    readonly kind: "tool_result";
    readonly toolCallId: string;
    readonly output: Record<string, unknown>;
  }
  | { readonly kind: "reply"; readonly text: string };

/** What an agent is asked to do. */
export interface AgentInput {
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
  /** The user's message. */
  readonly text: string;
}

/** An agent: yields steps until its `reply`, and stops promptly when `signal` aborts. */
export interface Agent {
  run(input: AgentInput, options: { signal: AbortSignal }): AsyncIterable<AgentStep>;
}
