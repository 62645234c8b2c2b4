/**
 * What a tool is: a name, a description, a JSON Schema for its input and an `execute`
 * function. The run orchestrator runs every tool call, whichever agent asks for it, so
 * validation, approval, events and cancellation are the same for all agents
 * (`docs/protocol.md#agents-and-tools`).
 *
 * @module
 */
import type { Json } from "../protocol/mod.ts";

/** What `execute` is told about the call it runs. */
export interface ToolContext {
  /** Fires when the run is cancelled and at the drain timeout: stop promptly. */
  readonly signal: AbortSignal;
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
  /** The call's id, unique within the user (the one in its events). */
  readonly toolCallId: string;
}

/** A JSON Schema, as plain data. */
export type JsonSchema = { readonly [key: string]: Json };

/**
 * A tool an agent may call.
 *
 * @example A tool that needs a person's approval
 * ```ts
 * import type { Tool } from "./tool.ts";
 *
 * const refund: Tool<{ orderId: string }> = {
 *   name: "refund_order",
 *   description: "Refunds an order in full.",
 *   inputSchema: {
 *     type: "object",
 *     properties: { orderId: { type: "string" } },
 *     required: ["orderId"],
 *     additionalProperties: false,
 *   },
 *   requiresApproval: true,
 *   execute: ({ orderId }) => ({ refunded: orderId }),
 * };
 * ```
 */
export interface Tool<I = never> {
  /** 1 to 64 letters, digits, `_` or `-` (what every provider accepts). */
  readonly name: string;
  /** What it does, for the model. */
  readonly description: string;
  /** JSON Schema of the input object; input that does not match never reaches `execute`. */
  readonly inputSchema: JsonSchema;
  /** Ask a person before each call. @default false */
  readonly requiresApproval?: boolean;
  /**
   * Runs the call. What it returns (JSON) is the call's output; what it throws completes the
   * call with error `tool_failed` (its message goes to the model) and the run goes on.
   */
  execute(input: I, context: ToolContext): Promise<Json> | Json;
}

/** A tool of any input type, as a registry holds it. */
// deno-lint-ignore no-explicit-any
export type AnyTool = Tool<any>;
