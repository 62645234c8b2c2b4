/**
 * What went wrong with a model call, as a run failure code (docs/protocol.md#agents-and-tools):
 * the provider's errors as the AI SDK reports them (an `APICallError` with `statusCode` and
 * `responseHeaders`, an error chunk in the stream, a failed fetch) mapped to one code, a message
 * that holds no secret, whether another attempt may help, and the `Retry-After` it asked for.
 *
 * @module
 */
import type { RunFailureCode } from "../../protocol/mod.ts";

/** The run failure codes a model call can end with. */
export type ModelFailureCode = Extract<
  RunFailureCode,
  "provider_unavailable" | "provider_rejected" | "context_too_long" | "rate_limited" | "timeout"
>;

/** A failed model call, classified. */
export interface ModelFailure {
  readonly code: ModelFailureCode;
  /** For people: one line, at most {@link MAX_MESSAGE_CHARS} characters, secrets redacted. */
  readonly message: string;
  /** How long the provider asked to wait (`retry-after-ms` or `Retry-After` of a 429 or a 5xx),
   *  when it said. */
  readonly retryAfterMs?: number;
  /** Whether another attempt may help: the provider was unreachable, answered 5xx or 429. */
  readonly retryable: boolean;
}

/** The longest message a failure carries. */
export const MAX_MESSAGE_CHARS = 300;

/** What providers say when the prompt does not fit the model's context. */
const CONTEXT_TOO_LONG =
  /context[_ ]length|context window|maximum context|prompt is too long|too many (input )?tokens|exceeds? (the )?(available |maximum )?context|exceed_context_size/i;

/** Options of {@link classifyModelError}. */
export interface ClassifyOptions {
  /** Values redacted from every message (the API key). */
  readonly secrets: readonly string[];
  /** Now, for an HTTP-date `Retry-After`. @default Date.now() */
  readonly now?: number;
}

/**
 * Classifies anything a model call failed with.
 *
 * @param error What the AI SDK reported or threw.
 * @returns The failure, its message redacted.
 */
export function classifyModelError(error: unknown, options: ClassifyOptions): ModelFailure {
  const fields = errorFields(error);
  const detail = fields.message ? `: ${fields.message}` : "";
  const status = fields.statusCode;
  const said = [fields.message, fields.type, fields.code, fields.responseBody].join(" ");
  let failure: ModelFailure;
  if (status === 429 || fields.type === "rate_limit_error") {
    const retryAfter = retryAfterMs(fields.responseHeaders, options.now ?? Date.now());
    failure = {
      code: "rate_limited",
      message: `The model provider is rate limiting requests${detail}`,
      ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
      retryable: true,
    };
  } else if (status === 413 || CONTEXT_TOO_LONG.test(said)) {
    failure = {
      code: "context_too_long",
      message: `The conversation is too long for the model${detail}`,
      retryable: false,
    };
  } else if (status !== undefined && status >= 400 && status < 500 && status !== 408) {
    failure = {
      code: "provider_rejected",
      message: `The model provider refused the request (HTTP ${status})${detail}`,
      retryable: false,
    };
  } else if (status !== undefined && status >= 500) {
    const retryAfter = retryAfterMs(fields.responseHeaders, options.now ?? Date.now());
    failure = {
      code: "provider_unavailable",
      message: `The model provider failed (HTTP ${status})${detail}`,
      ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
      retryable: true,
    };
  } else {
    // Unreachable, cut mid-stream, an error chunk, a stream that could not be read.
    failure = {
      code: "provider_unavailable",
      message: `The model provider could not be reached or its answer could not be read${detail}`,
      retryable: true,
    };
  }
  return { ...failure, message: cleanMessage(failure.message, options.secrets) };
}

/**
 * Reads how long a response asks to wait: `retry-after-ms` (OpenAI) first, then `Retry-After`
 * in seconds or as an HTTP date.
 *
 * @param headers Response headers, names in lower case.
 * @param now Now, in milliseconds since the epoch.
 * @returns Milliseconds (rounded up, at least 0), or `undefined` when absent or unreadable.
 */
export function retryAfterMs(
  headers: Readonly<Record<string, string | undefined>> | undefined,
  now: number,
): number | undefined {
  const ms = headers?.["retry-after-ms"];
  if (ms !== undefined && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.ceil(Number(ms));
  const after = headers?.["retry-after"]?.trim();
  if (after === undefined || after === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(after)) return Math.ceil(Number(after) * 1000);
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil(date - now));
}

/** Removes every secret and line break, and shortens the message. */
export function cleanMessage(message: string, secrets: readonly string[]): string {
  let clean = message;
  for (const secret of secrets) {
    if (secret.length > 0) clean = clean.replaceAll(secret, "[redacted]");
  }
  clean = clean.replace(/\s+/g, " ").trim();
  return clean.length <= MAX_MESSAGE_CHARS ? clean : `${clean.slice(0, MAX_MESSAGE_CHARS - 1)}…`;
}

interface ErrorFields {
  readonly message?: string;
  readonly statusCode?: number;
  readonly type?: string;
  readonly code?: string;
  readonly responseBody?: string;
  readonly responseHeaders?: Record<string, string>;
}

/** Reads the fields the SDK's errors carry, whichever class (or plain error chunk) it is. */
function errorFields(error: unknown): ErrorFields {
  if (typeof error !== "object" || error === null) {
    return { message: typeof error === "string" ? error : undefined };
  }
  const record = error as Record<string, unknown>;
  const string = (value: unknown) => typeof value === "string" ? value : undefined;
  const codeValue = record.code;
  const cause = record.cause as Record<string, unknown> | undefined;
  return {
    message: string(record.message) ?? string(cause?.message),
    statusCode: typeof record.statusCode === "number" ? record.statusCode : undefined,
    type: string(record.type),
    code: typeof codeValue === "number" ? String(codeValue) : string(codeValue),
    responseBody: string(record.responseBody),
    responseHeaders: typeof record.responseHeaders === "object" && record.responseHeaders !== null
      ? record.responseHeaders as Record<string, string>
      : undefined,
  };
}
