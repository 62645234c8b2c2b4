/**
 * The close codes of SPEC §3, as one const object, and the single function that turns any
 * failure into a close frame. A 4xxx code is 4000 + the nearest HTTP status.
 *
 * @module
 */

/** WebSocket close codes a client of `agentsocket.v1` can see. */
export const CloseCode = {
  /** Normal close. */
  Normal: 1000,
  /** Policy: repeated abuse. */
  PolicyViolation: 1008,
  /** A frame larger than the frame limit. */
  MessageTooBig: 1009,
  /** A genuine internal fault only; a timing race never produces it. */
  InternalError: 1011,
  /** The server is draining (restart): reconnect, elsewhere, and resume. */
  ServiceRestart: 1012,
  /** Dependencies not ready, or overloaded: retry with backoff. */
  TryAgainLater: 1013,
  /** The first frame was not a valid `hello`. */
  BadHello: 4400,
  /** Missing, invalid or expired token. */
  Unauthorized: 4401,
  /** No `hello` within the handshake timeout. */
  HelloTimeout: 4408,
  /** Too many connections for the user, or pre-ready queue overflow: retry with backoff. */
  TooManyRequests: 4429,
} as const;

/** One of the {@link CloseCode} values. */
export type CloseCode = typeof CloseCode[keyof typeof CloseCode];

/** RFC 6455 allows at most 123 bytes of close reason. */
const MAX_REASON_BYTES = 123;

/** A decision to close a connection with a given code and reason. */
export class ConnectionCloseError extends Error {
  /** The close code to send. */
  readonly code: CloseCode;
  constructor(code: CloseCode, reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = "ConnectionCloseError";
    this.code = code;
  }
}

/**
 * Maps any failure to a close frame: a {@link ConnectionCloseError} keeps its code; anything
 * else is a genuine internal fault (1011).
 *
 * @param error What went wrong.
 * @returns The code and a reason that fits in a close frame.
 */
export function closeFrameFor(error: unknown): { code: CloseCode; reason: string } {
  if (error instanceof ConnectionCloseError) {
    return { code: error.code, reason: truncateReason(error.message) };
  }
  return { code: CloseCode.InternalError, reason: "Internal error" };
}

/** Cuts a close reason to at most 123 UTF-8 bytes without splitting a character. */
export function truncateReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= MAX_REASON_BYTES) return reason;
  let out = "";
  let used = 0;
  for (const char of reason) {
    const size = new TextEncoder().encode(char).length;
    if (used + size > MAX_REASON_BYTES) break;
    out += char;
    used += size;
  }
  return out;
}
