/**
 * The run events: every event name and the shape of its `data`, declared once. The run
 * orchestrator builds events from it, and the client library and the page read them through
 * it, so a new event is one edit here and every `switch` over {@link EventName} that forgot it
 * fails to compile (each ends with `default: { const never: never = name; }`).
 *
 * The rules for the order of a run's events are in `docs/protocol.md#run-events`.
 *
 * @module
 */

/** A JSON value. */
export type Json = null | boolean | number | string | readonly Json[] | {
  readonly [key: string]: Json;
};

/** A code and a message, as carried by `agent_failed` and a failed `tool_completed`. */
export interface ErrorInfo {
  /** Machine-readable, snake_case (see {@link RUN_FAILURE_CODES} and {@link TOOL_ERROR_CODES}). */
  readonly code: string;
  /** For people; never holds a secret. */
  readonly message: string;
  /** With `rate_limited`: how long the provider asked to wait, when it said. */
  readonly retryAfterMs?: number;
}

/** Tokens a run used, summed over all of its model calls. */
export interface Usage {
  /** Input tokens, cached input included. */
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** Who or what decided a tool approval. */
export const APPROVAL_DECIDERS = [
  "user",
  "timeout",
  "cancelled",
  "shutdown",
  "interrupted",
] as const;

/** One of {@link APPROVAL_DECIDERS}. */
export type ApprovalDecider = typeof APPROVAL_DECIDERS[number];

/** The `data` of each run event, by name. */
export interface EventData {
  /** First event of every run. `text` is the user's message. */
  "agent_started": { readonly chatId: string; readonly text: string };
  /**
   * Reasoning. A model's streamed reasoning comes in pieces: the first of a block has
   * `delta: false` (or no `delta`), the next ones `delta: true` and extend it.
   */
  "agent_thinking": { readonly text: string; readonly delta?: boolean };
  /** A piece of the reply; the pieces of a run, in seq order, concatenate to the final text. */
  "agent_delta": { readonly text: string };
  /** A tool that needs approval waits for a decision until `expiresAt` (ISO 8601 UTC). */
  "tool_approval_requested": {
    readonly toolCallId: string;
    readonly tool: string;
    readonly input: { readonly [key: string]: Json };
    readonly expiresAt: string;
  };
  /** The one decision on an approval request. */
  "tool_approval_resolved": {
    readonly toolCallId: string;
    readonly tool: string;
    readonly approved: boolean;
    readonly by: ApprovalDecider;
    readonly reason?: string;
  };
  /** A tool call starts. `toolCallId` is unique within the user. */
  "tool_executing": {
    readonly toolCallId: string;
    readonly tool: string;
    readonly input: { readonly [key: string]: Json };
  };
  /**
   * A tool call ends, with `output` or `error`. `truncated` is true when the output was cut to
   * the server's limit (then `output` is the cut JSON text, a string).
   */
  "tool_completed": {
    readonly toolCallId: string;
    readonly tool: string;
    readonly output?: Json;
    readonly error?: ErrorInfo;
    readonly truncated?: boolean;
  };
  /** The run ended with a reply. `text` is the whole reply and replaces what was assembled. */
  "agent_completed": {
    readonly text: string;
    readonly usage?: Usage;
    readonly finishReason?: string;
  };
  /** The run failed. `text` is the reply so far. */
  "agent_failed": { readonly text: string; readonly error: ErrorInfo; readonly usage?: Usage };
  /** The run was cancelled. `text` is the reply so far. */
  "agent_cancelled": { readonly text: string; readonly usage?: Usage };
}

/** A run event name. */
export type EventName = keyof EventData;

/** Every run event name, once: a name missing here (or one too many) does not compile. */
const EVENT_NAME_SET = {
  agent_started: true,
  agent_thinking: true,
  agent_delta: true,
  tool_approval_requested: true,
  tool_approval_resolved: true,
  tool_executing: true,
  tool_completed: true,
  agent_completed: true,
  agent_failed: true,
  agent_cancelled: true,
} as const satisfies Record<EventName, true>;

/** Every run event name, in the order they can first appear in a run. */
export const EVENT_NAMES = Object.keys(EVENT_NAME_SET) as EventName[];

/** The names that end a run; exactly one of them is a run's last event. */
export type TerminalEventName = "agent_completed" | "agent_failed" | "agent_cancelled";

/** The names that end a run, as a set (for events whose name is only known as a string). */
export const TERMINAL_EVENT_NAMES: ReadonlySet<string> = new Set<TerminalEventName>([
  "agent_completed",
  "agent_failed",
  "agent_cancelled",
]);

/** Whether `name` ends a run. */
export function isTerminalEventName(name: string): name is TerminalEventName {
  return TERMINAL_EVENT_NAMES.has(name);
}

/** One run event frame, typed by its name. */
export type RunEvent<N extends EventName = EventName> = {
  [K in N]: {
    readonly type: "event";
    readonly seq: number;
    readonly threadId: string;
    readonly runId: string;
    readonly name: K;
    readonly data: EventData[K];
    readonly ts: string;
  };
}[N];

/**
 * Narrows an event whose name is only known as a string (from the wire, or the log) to a
 * {@link RunEvent}; `undefined` for a name this version does not know, which clients ignore.
 */
export function asRunEvent<
  E extends { readonly name: string; readonly data: unknown },
>(event: E): (E & RunEvent) | undefined {
  return (EVENT_NAMES as readonly string[]).includes(event.name)
    ? event as E & RunEvent
    : undefined;
}

/** Codes of `agent_failed.data.error.code`. */
export const RUN_FAILURE_CODES = [
  /** The model provider could not be reached, or answered 5xx. */
  "provider_unavailable",
  /** The provider refused the request (4xx other than 429: bad key, unknown model). */
  "provider_rejected",
  /** The user's message alone exceeds the context budget, or the provider says so. */
  "context_too_long",
  /** The provider answered 429; `retryAfterMs` when it said how long to wait. */
  "rate_limited",
  /** No byte from the model for the idle timeout while a request was open. */
  "timeout",
  /** The run made the most model calls allowed. */
  "max_steps",
  /** The server shut down before the run ended. */
  "shutdown",
  /** The instance running it stopped; another instance ended it. */
  "interrupted",
  /** The event engine was unavailable when the run had to publish. */
  "unavailable",
  /** The agent broke the agent contract or threw. */
  "agent_error",
] as const;

/** One of {@link RUN_FAILURE_CODES}. */
export type RunFailureCode = typeof RUN_FAILURE_CODES[number];

/** Codes of `tool_completed.data.error.code`. */
export const TOOL_ERROR_CODES = [
  /** The input did not match the tool's JSON Schema; the tool did not run. */
  "invalid_input",
  /** No tool of that name is registered; nothing ran. */
  "unknown_tool",
  /** The tool threw. */
  "tool_failed",
  /** A person denied the approval. */
  "denied",
  /** Nobody decided before the approval expired. */
  "approval_timeout",
  /** The run was cancelled while the call was open. */
  "cancelled",
  /** The server shut down while the call was open. */
  "shutdown",
  /** The instance running the call stopped. */
  "interrupted",
  /** The run ended (it failed, or its agent returned) before the call completed. */
  "run_ended",
] as const;

/** One of {@link TOOL_ERROR_CODES}. */
export type ToolErrorCode = typeof TOOL_ERROR_CODES[number];
