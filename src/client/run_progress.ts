/**
 * What one run has produced so far, assembled from its events: the reply (its pieces, then the
 * terminal event's text, which is authoritative), the reasoning, and the tool calls with their
 * approvals. A run's `agent_started` seen again (a replay after the log was replaced) rebuilds
 * nothing twice: pieces are matched by their place in the text, so each is taken exactly once
 * (`docs/protocol.md#run-events`).
 *
 * @module
 */
import type {
  ApprovalDecider,
  ErrorInfo,
  Json,
  RunEvent,
  RunStatus,
  Usage,
} from "../protocol/mod.ts";

/**
 * One piece of a run's output, in the order it arrived:
 * - `text`: appended to the reply;
 * - `reasoning`: appended to reasoning block `block` (a new index starts a new block);
 * - `replace`: the reply is now exactly `text` (the terminal event, or the stored reply, differs
 *   from what the pieces made; a suffix is a `text` piece instead).
 */
export type RunPiece =
  | { readonly kind: "text"; readonly text: string; readonly seq?: number }
  | {
    readonly kind: "reasoning";
    readonly text: string;
    readonly block: number;
    readonly seq: number;
  }
  | { readonly kind: "replace"; readonly text: string; readonly seq?: number };

/**
 * What a person waits for in a run, as one step a UI can tell them about (a notification, a
 * screen reader's announcement), or nothing for an event that only adds to the reply. The
 * client decides this for every event name (see {@link milestoneOf}), so a new event is
 * decided here, once, and every UI keeps switching over this smaller set.
 */
export type RunMilestone =
  | { readonly kind: "started" }
  | { readonly kind: "approval_needed"; readonly tool: string }
  | {
    readonly kind: "approval_decided";
    readonly tool: string;
    readonly approved: boolean;
    readonly by: ApprovalDecider;
  }
  | { readonly kind: "tool_running"; readonly tool: string }
  | { readonly kind: "tool_failed"; readonly tool: string; readonly error: ErrorInfo }
  | { readonly kind: "completed" }
  | { readonly kind: "failed"; readonly error: ErrorInfo }
  | { readonly kind: "cancelled" };

/**
 * The milestone one run event marks, or `undefined` for one that only adds to what is shown
 * (a piece of the reply or of the reasoning, a tool's output).
 */
export function milestoneOf(event: RunEvent): RunMilestone | undefined {
  switch (event.name) {
    case "agent_started":
      return { kind: "started" };
    case "agent_thinking":
    case "agent_delta":
      return undefined;
    case "tool_approval_requested":
      return { kind: "approval_needed", tool: event.data.tool };
    case "tool_approval_resolved": {
      const { tool, approved, by } = event.data;
      return { kind: "approval_decided", tool, approved, by };
    }
    case "tool_executing":
      return { kind: "tool_running", tool: event.data.tool };
    case "tool_completed":
      return event.data.error
        ? { kind: "tool_failed", tool: event.data.tool, error: event.data.error }
        : undefined;
    case "agent_completed":
      return { kind: "completed" };
    case "agent_failed":
      return { kind: "failed", error: event.data.error };
    case "agent_cancelled":
      return { kind: "cancelled" };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}

/** The one decision on an approval (`tool_approval_resolved`). */
export interface ApprovalResolution {
  readonly approved: boolean;
  /** `user`, or what decided in a person's stead (`timeout`, `cancelled`, `shutdown`, …). */
  readonly by: ApprovalDecider;
  readonly reason?: string;
}

/** A tool call's approval: asked for until `expiresAt`, then resolved once. */
export interface ToolApproval {
  /** ISO 8601 UTC, from the server's clock. */
  readonly expiresAt: string;
  /** Present once decided. */
  readonly resolution?: ApprovalResolution;
}

/**
 * Where a tool call stands:
 * - `awaiting_approval`: a person must approve or deny it (see `ChatRun.approve`);
 * - `approved`: approved, not started yet; `denied`: denied (its `tool_completed` follows);
 * - `executing`: running; `completed`: ended with `output`; `failed`: ended with `error`.
 */
export type ToolCallStatus =
  | "awaiting_approval"
  | "approved"
  | "denied"
  | "executing"
  | "completed"
  | "failed";

/** One tool call of a run. */
export interface ToolCall {
  /** Unique within the user. */
  readonly toolCallId: string;
  readonly tool: string;
  readonly input: { readonly [key: string]: Json };
  readonly status: ToolCallStatus;
  /** Present for a tool that needs approval. */
  readonly approval?: ToolApproval;
  readonly output?: Json;
  readonly error?: ErrorInfo;
  /** The output was cut to the server's limit. */
  readonly truncated?: boolean;
  /** The seq of the call's first event (for ordering it among reasoning blocks). */
  readonly seq: number;
}

/** One thing the agent did in a run: a reasoning block, or a tool call. */
export type RunStep =
  | { readonly kind: "thinking"; readonly seq: number; readonly text: string }
  | ToolCall & {
    readonly kind: "tool";
    /** The call has its `tool_completed` (`output` or `error`). */
    readonly done: boolean;
  };

/** How a run ended, as its terminal event (or the stored history) says. */
export interface RunEnding {
  readonly status: Exclude<RunStatus, "running">;
  readonly text: string;
  readonly error?: ErrorInfo;
  readonly usage?: Usage;
  readonly finishReason?: string;
}

/** Where the next replayed piece falls: its offset in the text and in its reasoning block. */
interface ReplayCursor {
  text: number;
  block: number;
  blockOffset: number;
}

/** A run's output so far; the only writer of it. */
export class RunProgress {
  #text = "";
  #reasoning: { text: string; seq: number }[] = [];
  #cursor: ReplayCursor = { text: 0, block: -1, blockOffset: 0 };
  #pieces: RunPiece[] = [];
  #toolCalls = new Map<string, ToolCall>();
  #started = false;
  #ending?: RunEnding;

  /** The reply so far (the whole reply once ended). */
  get text(): string {
    return this.#text;
  }

  /** The reasoning so far: its blocks, separated by a blank line. */
  get reasoning(): string {
    return this.#reasoning.map((block) => block.text).join("\n\n");
  }

  /** The reasoning blocks and the tool calls, in the order they began. */
  get steps(): readonly RunStep[] {
    const steps: RunStep[] = [
      ...this.#reasoning.map((block) => ({ kind: "thinking", ...block }) as const),
      ...[...this.#toolCalls.values()].map((call) =>
        ({
          kind: "tool",
          ...call,
          done: call.status === "completed" || call.status === "failed",
        }) as const
      ),
    ];
    return steps.sort((a, b) => a.seq - b.seq);
  }

  /** Every piece so far, in order. */
  get pieces(): readonly RunPiece[] {
    return this.#pieces;
  }

  /** The tool calls, in the order they first appeared. */
  get toolCalls(): readonly ToolCall[] {
    return [...this.#toolCalls.values()];
  }

  /** The tool calls waiting for a person's decision (none once the run ended). */
  get awaitingApproval(): readonly ToolCall[] {
    if (this.#ending) return [];
    return this.toolCalls.filter((call) => call.status === "awaiting_approval");
  }

  /** How the run ended, once it did. */
  get ending(): RunEnding | undefined {
    return this.#ending;
  }

  /** A tool call by id. */
  toolCall(toolCallId: string): ToolCall | undefined {
    return this.#toolCalls.get(toolCallId);
  }

  /**
   * Takes one event of the run (each at most once, in seq order).
   *
   * @returns The pieces it added, in order (often none).
   */
  apply(event: RunEvent): RunPiece[] {
    const added: RunPiece[] = [];
    switch (event.name) {
      case "agent_started":
        // Seen again only when the run is replayed from its start: match pieces by place.
        if (this.#started) this.#cursor = { text: 0, block: -1, blockOffset: 0 };
        this.#started = true;
        break;
      case "agent_thinking":
        this.#reason(event.data.text, event.data.delta === true, event.seq, added);
        break;
      case "agent_delta":
        this.#append(event.data.text, event.seq, added);
        break;
      case "tool_approval_requested": {
        const { toolCallId, tool, input, expiresAt } = event.data;
        const call = this.#toolCalls.get(toolCallId);
        if (call?.approval) break; // replayed
        this.#toolCalls.set(toolCallId, {
          toolCallId,
          tool,
          input,
          status: "awaiting_approval",
          approval: { expiresAt },
          seq: event.seq,
        });
        break;
      }
      case "tool_approval_resolved": {
        const { toolCallId, tool, approved, by, reason } = event.data;
        const call = this.#toolCalls.get(toolCallId);
        const resolution = reason === undefined ? { approved, by } : { approved, by, reason };
        const waiting = call === undefined || call.status === "awaiting_approval";
        this.#toolCalls.set(toolCallId, {
          toolCallId,
          tool,
          input: call?.input ?? {},
          status: waiting ? (approved ? "approved" : "denied") : call.status,
          approval: { expiresAt: call?.approval?.expiresAt ?? "", resolution },
          seq: call?.seq ?? event.seq,
        });
        break;
      }
      case "tool_executing": {
        const { toolCallId, tool, input } = event.data;
        const call = this.#toolCalls.get(toolCallId);
        if (call && (call.status === "completed" || call.status === "failed")) break;
        this.#toolCalls.set(toolCallId, {
          ...call,
          toolCallId,
          tool,
          input,
          status: "executing",
          seq: call?.seq ?? event.seq,
        });
        break;
      }
      case "tool_completed": {
        const { toolCallId, tool, output, error, truncated } = event.data;
        const call = this.#toolCalls.get(toolCallId);
        this.#toolCalls.set(toolCallId, {
          input: {},
          ...call,
          toolCallId,
          tool,
          status: error ? "failed" : "completed",
          ...(output === undefined ? {} : { output }),
          ...(error === undefined ? {} : { error }),
          ...(truncated === undefined ? {} : { truncated }),
          seq: call?.seq ?? event.seq,
        });
        break;
      }
      case "agent_completed":
        this.end(
          {
            status: "completed",
            text: event.data.text,
            usage: event.data.usage,
            finishReason: event.data.finishReason,
          },
          event.seq,
          added,
        );
        break;
      case "agent_failed":
        this.end(
          {
            status: "failed",
            text: event.data.text,
            error: event.data.error,
            usage: event.data.usage,
          },
          event.seq,
          added,
        );
        break;
      case "agent_cancelled":
        this.end(
          { status: "cancelled", text: event.data.text, usage: event.data.usage },
          event.seq,
          added,
        );
        break;
      default: {
        const unknown: never = event;
        return unknown;
      }
    }
    return added;
  }

  /**
   * Ends the run: its text replaces what the pieces made (the terminal event's, or the stored
   * reply's); later calls change nothing.
   *
   * @returns The pieces it added (a suffix, a replacement, or none).
   */
  end(ending: RunEnding, seq?: number, added: RunPiece[] = []): RunPiece[] {
    if (this.#ending) return added;
    const text = typeof ending.text === "string" ? ending.text : this.#text;
    this.#ending = { ...withoutUndefined(ending), text };
    if (text !== this.#text) {
      const piece: RunPiece = text.startsWith(this.#text)
        ? { kind: "text", text: text.slice(this.#text.length), seq }
        : { kind: "replace", text, seq };
      this.#text = text;
      this.#take(piece, added);
    }
    return added;
  }

  #append(piece: string, seq: number, added: RunPiece[]): void {
    if (this.#ending || typeof piece !== "string") return;
    const at = this.#cursor.text;
    this.#cursor.text = at + piece.length;
    // Only the part past what the reply holds is new (all of it, except in a replay).
    const fresh = piece.slice(Math.max(0, this.#text.length - at));
    if (fresh === "") return;
    this.#text += fresh;
    this.#take({ kind: "text", text: fresh, seq }, added);
  }

  #reason(piece: string, delta: boolean, seq: number, added: RunPiece[]): void {
    if (this.#ending || typeof piece !== "string") return;
    const cursor = this.#cursor;
    if (!delta || cursor.block < 0) {
      cursor.block++;
      cursor.blockOffset = 0;
    }
    let block = this.#reasoning[cursor.block];
    if (!block) {
      block = { text: "", seq };
      this.#reasoning[cursor.block] = block;
    }
    const at = cursor.blockOffset;
    cursor.blockOffset = at + piece.length;
    const fresh = piece.slice(Math.max(0, block.text.length - at));
    if (fresh === "") return;
    block.text += fresh;
    this.#take({ kind: "reasoning", text: fresh, block: cursor.block, seq }, added);
  }

  #take(piece: RunPiece, added: RunPiece[]): void {
    this.#pieces.push(piece);
    added.push(piece);
  }
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
