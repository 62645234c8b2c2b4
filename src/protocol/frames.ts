/**
 * The `agentsocket.v1` frames (`docs/protocol.md`) as types, and the parser for client frames. This module
 * is shared by the server and the client library, so it uses no Deno or Node API.
 *
 * @module
 */

/** The subprotocol name a client offers and the server selects. */
export const PROTOCOL_V1 = "agentsocket.v1";

/** The prefix of a subprotocol entry that carries a token (`bearer.<jwt>`). */
export const BEARER_PROTOCOL_PREFIX = "bearer.";

/** Longest accepted `id`, `threadId`, `runId` or resume epoch, in characters. */
export const MAX_ID_LENGTH = 128;

/** Longest accepted approval `reason`, in characters. */
export const MAX_REASON_LENGTH = 2_000;

/** Longest accepted token, in characters. */
export const MAX_TOKEN_LENGTH = 16_384;

// Client -> Server

/** Resume position: the epoch of the user's event log and the last seq the client holds. */
export interface ResumePosition {
  readonly epoch: string;
  readonly after: number;
}

/** `hello`: the first frame of every connection. */
export interface HelloFrame {
  readonly type: "hello";
  readonly token?: string;
  readonly resume?: ResumePosition;
}

/** `chat`: a user message that starts a run. `id` is the client's idempotency key. */
export interface ChatFrame {
  readonly type: "chat";
  readonly id: string;
  readonly threadId?: string;
  readonly text: string;
}

/** `cancel`: ends a run in flight. */
export interface CancelFrame {
  readonly type: "cancel";
  readonly runId: string;
}

/** `approve`: answers a `tool_approval_requested` (the first decision wins). */
export interface ApproveFrame {
  readonly type: "approve";
  readonly runId: string;
  readonly toolCallId: string;
  readonly approved: boolean;
  /** Why (a denial's reason goes to the model). */
  readonly reason?: string;
}

/** `refresh`: extends the connection's life with a fresh token. */
export interface RefreshFrame {
  readonly type: "refresh";
  readonly token: string;
}

/** `ping`: answered with `pong`. */
export interface PingFrame {
  readonly type: "ping";
}

/** Any frame a client may send. */
export type ClientFrame =
  | HelloFrame
  | ChatFrame
  | CancelFrame
  | ApproveFrame
  | RefreshFrame
  | PingFrame;

// Server -> Client

/** A run of the user that is still in flight when `ready` is sent. */
export interface ActiveRun {
  readonly runId: string;
  readonly threadId: string;
  readonly startSeq: number;
}

/** `ready`: the server's first frame; nothing precedes it. */
export interface ReadyFrame {
  readonly type: "ready";
  readonly connectionId: string;
  readonly userId: string;
  readonly epoch: string;
  readonly seq: number;
  readonly resumed: boolean;
  readonly activeRuns: readonly ActiveRun[];
  /**
   * The largest frame, in UTF-8 bytes, the server accepts from this client (a larger one
   * closes 1009). Absent from older servers: assume 65536.
   */
  readonly maxFrameBytes?: number;
}

/** Final status of a run, or `running` while in flight. */
export type RunStatus = "running" | "completed" | "failed" | "cancelled";

/** `ack`: the chat's message and run are stored. */
export interface AckFrame {
  readonly type: "ack";
  readonly id: string;
  readonly threadId: string;
  readonly runId: string;
  readonly duplicate?: true;
  readonly status?: RunStatus;
}

/**
 * `event`: one run event, in per-user `seq` order, as it arrives on the wire (any name: clients
 * ignore names they do not know). `RunEvent` (events.ts) is the same frame typed by its name.
 */
export interface EventFrame {
  readonly type: "event";
  readonly seq: number;
  readonly threadId: string;
  readonly runId: string;
  readonly name: string;
  readonly data: Record<string, unknown>;
  readonly ts: string;
}

/** Error codes of an `error` frame. */
export const ERROR_CODES = [
  "bad_frame",
  "unknown_type",
  "invalid_field",
  "not_found",
  "thread_busy",
  "run_finished",
  "idempotency_conflict",
  "unavailable",
  "draining",
  "rate_limited",
  "too_many_runs",
  "already_resolved",
  "refused",
] as const;

/** An `error` frame code. */
export type ErrorCode = typeof ERROR_CODES[number];

/** `error`: the frame was refused; the connection stays open. */
export interface ErrorFrame {
  readonly type: "error";
  readonly code: ErrorCode;
  readonly message: string;
  readonly ref?: string;
  /**
   * With code `refused`: the host application's own reason, snake_case (`budget_exceeded`),
   * from its `beforeRun` hook (docs/protocol.md#errors).
   */
  readonly refusal?: string;
}

/** `refreshed`: the connection now lives until `exp` (seconds since the epoch). */
export interface RefreshedFrame {
  readonly type: "refreshed";
  readonly exp: number;
}

/** `pong`: the answer to `ping`. */
export interface PongFrame {
  readonly type: "pong";
}

/** Any frame the server sends. */
export type ServerFrame =
  | ReadyFrame
  | AckFrame
  | EventFrame
  | ErrorFrame
  | RefreshedFrame
  | PongFrame;

/** A client frame that could not be accepted, with the error frame that answers it. */
export interface FrameRejection {
  readonly ok: false;
  readonly code: "bad_frame" | "unknown_type" | "invalid_field";
  readonly message: string;
  /** The chat `id`, cancel `runId` or approve `toolCallId`, when the frame carried one. */
  readonly ref?: string;
}

/** The outcome of {@link parseClientFrame}. */
export type ParseResult = { readonly ok: true; readonly frame: ClientFrame } | FrameRejection;

const CLIENT_TYPES = new Set(["hello", "chat", "cancel", "approve", "refresh", "ping"]);

/**
 * Parses one text frame from a client. Never throws: hostile input becomes a rejection naming
 * the field, what was expected and what arrived. Unknown extra fields are ignored.
 *
 * @param data The frame's text.
 * @returns The typed frame, or a rejection with its error code.
 */
export function parseClientFrame(data: string): ParseResult {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return reject("bad_frame", "Frame is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return reject("bad_frame", `Frame must be a JSON object, received ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  const type = record.type;
  if (typeof type !== "string") {
    return reject("bad_frame", `Field "type" must be a string, received ${describe(type)}`);
  }
  if (!CLIENT_TYPES.has(type)) {
    return reject("unknown_type", `Unknown frame type ${quote(type)}`);
  }
  switch (type) {
    case "hello":
      return parseHello(record);
    case "chat":
      return parseChat(record);
    case "cancel":
      return parseCancel(record);
    case "approve":
      return parseApprove(record);
    case "refresh":
      return parseRefresh(record);
    default:
      return { ok: true, frame: { type: "ping" } };
  }
}

function parseHello(record: Record<string, unknown>): ParseResult {
  const token = optionalToken(record, "token");
  if (token !== undefined && typeof token !== "string") return token;
  let resume: ResumePosition | undefined;
  if (record.resume !== undefined) {
    const raw = record.resume;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      return reject("invalid_field", `Field "resume" must be an object, received ${describe(raw)}`);
    }
    const { epoch, after } = raw as Record<string, unknown>;
    if (!isId(epoch)) {
      return reject("invalid_field", `Field "resume.epoch" must be a non-empty string`);
    }
    if (typeof after !== "number" || !Number.isSafeInteger(after) || after < 0) {
      return reject(
        "invalid_field",
        `Field "resume.after" must be a non-negative integer, received ${describe(after)}`,
      );
    }
    resume = { epoch, after };
  }
  return { ok: true, frame: { type: "hello", token, resume } };
}

function parseChat(record: Record<string, unknown>): ParseResult {
  const id = record.id;
  if (!isId(id)) {
    return reject(
      "invalid_field",
      `Field "id" must be a string of 1 to ${MAX_ID_LENGTH} printable characters`,
    );
  }
  const text = record.text;
  if (typeof text !== "string" || text.trim().length === 0) {
    return reject("invalid_field", `Field "text" must be a non-empty string`, id);
  }
  const threadId = record.threadId;
  if (threadId !== undefined && !isId(threadId)) {
    return reject(
      "invalid_field",
      `Field "threadId" must be a string of 1 to ${MAX_ID_LENGTH} printable characters`,
      id,
    );
  }
  return { ok: true, frame: { type: "chat", id, text, threadId } };
}

function parseCancel(record: Record<string, unknown>): ParseResult {
  const runId = record.runId;
  if (!isId(runId)) {
    return reject(
      "invalid_field",
      `Field "runId" must be a string of 1 to ${MAX_ID_LENGTH} printable characters`,
    );
  }
  return { ok: true, frame: { type: "cancel", runId } };
}

function parseApprove(record: Record<string, unknown>): ParseResult {
  const { runId, toolCallId, approved, reason } = record;
  const ref = isId(toolCallId) ? toolCallId : undefined;
  if (!isId(runId)) {
    return reject(
      "invalid_field",
      `Field "runId" must be a string of 1 to ${MAX_ID_LENGTH} printable characters`,
      ref,
    );
  }
  if (ref === undefined) {
    return reject(
      "invalid_field",
      `Field "toolCallId" must be a string of 1 to ${MAX_ID_LENGTH} printable characters`,
    );
  }
  if (typeof approved !== "boolean") {
    return reject(
      "invalid_field",
      `Field "approved" must be a boolean, received ${describe(approved)}`,
      ref,
    );
  }
  if (
    reason !== undefined &&
    (typeof reason !== "string" || reason.length > MAX_REASON_LENGTH || !reason.isWellFormed())
  ) {
    return reject(
      "invalid_field",
      `Field "reason" must be a string of at most ${MAX_REASON_LENGTH} characters`,
      ref,
    );
  }
  return {
    ok: true,
    frame: reason === undefined
      ? { type: "approve", runId, toolCallId: ref, approved }
      : { type: "approve", runId, toolCallId: ref, approved, reason },
  };
}

function parseRefresh(record: Record<string, unknown>): ParseResult {
  const token = optionalToken(record, "token");
  if (token === undefined) return reject("invalid_field", `Field "token" is required`);
  if (typeof token !== "string") return token;
  return { ok: true, frame: { type: "refresh", token } };
}

function optionalToken(
  record: Record<string, unknown>,
  field: string,
): string | FrameRejection | undefined {
  const token = record[field];
  if (token === undefined) return undefined;
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    return reject(
      "invalid_field",
      `Field "${field}" must be a non-empty string of at most ${MAX_TOKEN_LENGTH} characters`,
    );
  }
  return token;
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/** An id: 1 to 128 characters, well-formed UTF-16 (no lone surrogate), no control character. */
function isId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_ID_LENGTH &&
    value.isWellFormed() && !CONTROL_CHARACTERS.test(value);
}

function reject(code: FrameRejection["code"], message: string, ref?: string): FrameRejection {
  return ref === undefined ? { ok: false, code, message } : { ok: false, code, message, ref };
}

function quote(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${quote(value)}`;
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`;
}
