/**
 * Rules both stores share, so they cannot drift: thread titles, the `interrupted` error of a
 * claimed run, defaults and timestamp rendering.
 *
 * @module
 */
import type { RunError } from "./chat_store.ts";

/** How long a chat id is remembered by default: 24 h (SPEC §1). */
export const DEFAULT_CHAT_ID_TTL_SECONDS = 24 * 60 * 60;

/** Longest thread title, in characters (code points). */
export const MAX_TITLE_LENGTH = 80;

/** The error stored on a running run whose owner's lease expired (SPEC §7). */
export const INTERRUPTED_ERROR: RunError = Object.freeze({
  code: "interrupted",
  message: "The instance running this run stopped",
});

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
