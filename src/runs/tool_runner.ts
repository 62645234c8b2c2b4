/**
 * The tool handle of one run: every tool call an agent makes goes through it, so validation,
 * approval, events and cancellation are the same for every agent
 * (`docs/protocol.md#agents-and-tools`). A call gets a `toolCallId` unique within the user; a
 * call refused before it runs (unknown tool, input that does not match the schema, an
 * approval denied or timed out) completes without `tool_executing`; a throwing tool completes
 * with `tool_failed` and the run goes on. Calls may overlap.
 *
 * @module
 */
import type { ToolCallResult, ToolHandle, ToolSpec } from "../agent/mod.ts";
import type { ApprovalDecider, ErrorInfo, Json, ToolErrorCode } from "../protocol/mod.ts";
import type { ToolRegistry } from "../tools/mod.ts";
import type { RunRef } from "./run_events.ts";
import type { RunPublisher } from "./run_publisher.ts";

/** A person's (or the clock's) decision on one call. */
export interface ApprovalDecision {
  readonly approved: boolean;
  readonly by: ApprovalDecider;
  readonly reason?: string;
}

/** Asks for approval of calls; see `approval_gate.ts`. */
export interface ApprovalPort {
  /**
   * Publishes `tool_approval_requested` (after what the run already queued) and resolves with
   * the one decision.
   *
   * @throws The signal's reason when the run stops first (its ending resolves the request).
   */
  decide(
    call: { readonly toolCallId: string; readonly tool: string; readonly input: Json },
    signal: AbortSignal,
  ): Promise<ApprovalDecision>;
}

/** A call that has not completed yet. */
export interface OpenCall {
  readonly toolCallId: string;
  readonly tool: string;
  /** Waiting for a decision, or running. */
  readonly phase: "approval" | "executing";
}

/** Options of {@link ToolRunner}. */
export interface ToolRunnerOptions {
  readonly registry: ToolRegistry;
  readonly publisher: RunPublisher;
  /** Aborted when the run stops. */
  readonly signal: AbortSignal;
  /** Tool output sent to the model and in `tool_completed` is cut to this. @default 16384 */
  readonly outputMaxBytes?: number;
  /** Asks a person; absent: a tool that needs approval is refused (`denied`). */
  readonly approvals?: ApprovalPort;
  /** Makes a `toolCallId` unique within the user. @default "tc_" + 16 random characters */
  readonly newToolCallId?: () => string;
}

const encoder = new TextEncoder();

/** Runs the tool calls of one run. */
export class ToolRunner implements ToolHandle {
  #run: RunRef;
  #o: ToolRunnerOptions;
  #open = new Map<string, OpenCall>();

  constructor(run: RunRef, options: ToolRunnerOptions) {
    this.#run = run;
    this.#o = options;
  }

  /** The registered tools, as a model sees them. */
  get specs(): readonly ToolSpec[] {
    return this.#o.registry.specs;
  }

  /** Calls started and not completed, oldest first. */
  get open(): readonly OpenCall[] {
    return [...this.#open.values()];
  }

  /**
   * Marks every open call as ended (a late completion then publishes nothing) and returns
   * them, for the run's ending to complete with an error.
   */
  takeOpen(): OpenCall[] {
    const open = [...this.#open.values()];
    this.#open.clear();
    return open;
  }

  async call(name: string, input: unknown): Promise<ToolCallResult> {
    const { registry, publisher, signal } = this.#o;
    signal.throwIfAborted();
    const toolCallId = (this.#o.newToolCallId ?? randomToolCallId)();
    const tool = registry.get(name);
    if (!tool) {
      return this.#refuse(toolCallId, name, {
        code: "unknown_tool",
        message: `No tool named "${name}" (available: ${registry.names.join(", ") || "none"})`,
      });
    }
    const check = registry.validate(name, input);
    if (!check.ok) {
      return this.#refuse(toolCallId, name, { code: "invalid_input", message: check.message });
    }
    const jsonInput = check.input as { readonly [key: string]: Json };
    if (registry.requiresApproval(name)) {
      this.#open.set(toolCallId, { toolCallId, tool: name, phase: "approval" });
      const decision = this.#o.approvals
        ? await this.#o.approvals.decide({ toolCallId, tool: name, input: jsonInput }, signal)
        : { approved: false, by: "user" as const, reason: "No approval path is configured" };
      if (!this.#open.has(toolCallId)) throw signal.reason; // the run ended meanwhile
      if (!decision.approved) {
        this.#open.delete(toolCallId);
        return this.#refuse(toolCallId, name, denial(decision));
      }
    }
    this.#open.set(toolCallId, { toolCallId, tool: name, phase: "executing" });
    publisher.emit({
      name: "tool_executing",
      data: { toolCallId, tool: name, input: jsonInput },
    });
    let output: Json;
    try {
      const result = await raceAbort(
        Promise.resolve().then(() =>
          tool.execute(check.input, {
            signal,
            userId: this.#run.userId,
            threadId: this.#run.threadId,
            runId: this.#run.id,
            toolCallId,
          })
        ),
        signal,
      );
      output = toJson(result);
    } catch (error) {
      if (signal.aborted) throw signal.reason; // the run's ending completes the call
      if (!this.#open.delete(toolCallId)) throw error;
      const message = error instanceof Error ? error.message : String(error);
      const info: ErrorInfo & { code: ToolErrorCode } = {
        code: "tool_failed",
        message: message || `The tool "${name}" failed`,
      };
      publisher.emit({ name: "tool_completed", data: { toolCallId, tool: name, error: info } });
      return { ok: false, toolCallId, error: info, text: errorText(info) };
    }
    if (!this.#open.delete(toolCallId)) throw signal.reason ?? new Error("tool call closed");
    const cut = cutOutput(output, this.#o.outputMaxBytes ?? 16_384);
    publisher.emit({
      name: "tool_completed",
      data: cut.truncated
        ? { toolCallId, tool: name, output: cut.text, truncated: true }
        : { toolCallId, tool: name, output },
    });
    return {
      ok: true,
      toolCallId,
      output: cut.truncated ? cut.text : output,
      text: cut.truncated
        ? `${cut.text}\n[output cut at ${this.#o.outputMaxBytes ?? 16_384} bytes]`
        : cut.text,
    };
  }

  #refuse(
    toolCallId: string,
    tool: string,
    error: ErrorInfo & { code: ToolErrorCode },
  ): ToolCallResult {
    this.#o.publisher.emit({ name: "tool_completed", data: { toolCallId, tool, error } });
    return { ok: false, toolCallId, error, text: errorText(error) };
  }
}

function denial(decision: ApprovalDecision): ErrorInfo & { code: ToolErrorCode } {
  switch (decision.by) {
    case "user":
      return {
        code: "denied",
        message: decision.reason ? `Denied: ${decision.reason}` : "The user denied this call",
      };
    case "timeout":
      return { code: "approval_timeout", message: "Nobody approved this call in time" };
    case "cancelled":
      return { code: "cancelled", message: "The run was cancelled" };
    case "shutdown":
      return { code: "shutdown", message: "The server shut down" };
    case "interrupted":
      return { code: "interrupted", message: "The run was interrupted" };
    default: {
      const never: never = decision.by;
      return never;
    }
  }
}

function errorText(error: ErrorInfo): string {
  return `Error (${error.code}): ${error.message}`;
}

/** Rejects with the signal's reason as soon as it aborts, whatever `promise` does. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * A tool's return value as JSON.
 *
 * @throws {TypeError} when it cannot be written as JSON (a BigInt, a cycle).
 */
function toJson(value: unknown): Json {
  if (value === undefined) return null;
  const text = JSON.stringify(value);
  if (text === undefined) return null;
  return JSON.parse(text) as Json;
}

/** The output's JSON text, cut to `maxBytes` of UTF-8 without splitting a character. */
export function cutOutput(output: Json, maxBytes: number): { text: string; truncated: boolean } {
  const text = typeof output === "string" ? output : JSON.stringify(output);
  if (text.length * 3 <= maxBytes || encoder.encode(text).length <= maxBytes) {
    return { text, truncated: false };
  }
  let used = 0;
  let end = 0;
  for (const char of text) {
    const size = encoder.encode(char).length;
    if (used + size > maxBytes) break;
    used += size;
    end += char.length;
  }
  return { text: text.slice(0, end), truncated: true };
}

function randomToolCallId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "tc_" +
    btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}
