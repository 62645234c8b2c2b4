/**
 * Rules both stores share, so they cannot drift: thread titles, argument checks, usage counts,
 * defaults and timestamp rendering.
 *
 * @module
 */
import type { Usage } from "../protocol/mod.ts";
import { MAX_THREAD_TITLE_LENGTH } from "./chat_store.ts";

/** How long a chat id is remembered by default: 24 h, the protocol's promise to clients. */
export const DEFAULT_CHAT_ID_TTL_SECONDS = 24 * 60 * 60;

/** Longest title a new thread takes from its first message, in characters (code points). */
export const MAX_TITLE_LENGTH = 80;

/**
 * The title of a thread started by `text`: trimmed and cut to {@link MAX_TITLE_LENGTH}
 * characters, never splitting a surrogate pair.
 */
export function threadTitle(text: string): string {
  const trimmed = text.trim();
  if (trimmed.length <= MAX_TITLE_LENGTH) return trimmed;
  return Array.from(trimmed).slice(0, MAX_TITLE_LENGTH).join("");
}

/** Renders epoch milliseconds as an ISO 8601 UTC string. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Checks a duration option.
 *
 * @throws {RangeError} When `value` is not a positive finite number.
 */
export function checkPositive(what: string, name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot create ${what}: "${name}" must be a positive number, received ${value}`,
    );
  }
  return value;
}

/**
 * The title {@link ChatStore.renameThread} stores: `title` trimmed.
 *
 * @throws {RangeError} When the trimmed title is empty or longer than
 *   {@link MAX_THREAD_TITLE_LENGTH} characters (code points).
 */
export function renamedTitle(title: string): string {
  const trimmed = title.trim();
  const length = Array.from(trimmed).length;
  if (length < 1 || length > MAX_THREAD_TITLE_LENGTH) {
    throw new RangeError(
      `Cannot rename thread: "title" must be 1 to ${MAX_THREAD_TITLE_LENGTH} characters once trimmed, received ${length}`,
    );
  }
  return trimmed;
}

/**
 * Checks a count argument of a store call (`maxActiveRuns`, a history `limit`).
 *
 * @throws {RangeError} When `value` is not a non-negative safe integer.
 */
export function checkCountArgument(what: string, name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot ${what}: "${name}" must be a non-negative integer, received ${value}`,
    );
  }
  return value;
}

/**
 * Usage as stored: each count rounded to an integer, and one that is not a non-negative
 * finite number stored as 0, so that a bad report from an agent never keeps its run from
 * ending.
 */
export function storableUsage(usage: Usage | undefined): Usage | null {
  if (usage === undefined) return null;
  return {
    inputTokens: tokenCount(usage.inputTokens),
    outputTokens: tokenCount(usage.outputTokens),
  };
}

function tokenCount(value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return 0;
  return Math.min(Math.round(value), Number.MAX_SAFE_INTEGER);
}
