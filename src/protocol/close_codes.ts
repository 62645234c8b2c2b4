/**
 * The close codes (`docs/protocol.md#close-codes`), as one const object, and the single function that turns any
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

/**
 * What a client does when its connection closes:
 * - `resume`: reconnect at once (elsewhere, when behind a load balancer) and resume;
 * - `backoff`: reconnect after a growing, jittered delay, and resume;
 * - `reauth`: get a fresh token, then reconnect and resume (a second refusal in a row stops);
 * - `stop`: do not reconnect; retrying cannot help (a client bug or a refusal by policy).
 */
export type CloseAction = "resume" | "backoff" | "reauth" | "stop";

/**
 * What a client does about each code the server sends: the server's closes and the client's
 * reconnect decision both read it, so a new code is one edit here
 * (`docs/protocol.md#close-codes`).
 */
export const CLOSE_POLICY = {
  [CloseCode.Normal]: "stop", // the server never ends a session with 1000 on its own
  [CloseCode.PolicyViolation]: "stop", // repeated abuse: a retry would be refused again
  [CloseCode.MessageTooBig]: "stop", // a client bug: the same frame would be too big again
  [CloseCode.InternalError]: "backoff", // a genuine fault: try again later
  [CloseCode.ServiceRestart]: "resume", // draining: reconnect (elsewhere) and resume
  [CloseCode.TryAgainLater]: "backoff", // dependencies not ready, or overloaded
  [CloseCode.BadHello]: "stop", // a client bug
  [CloseCode.Unauthorized]: "reauth", // a fresh token, then resume
  [CloseCode.HelloTimeout]: "backoff", // the client was too slow to say hello
  [CloseCode.TooManyRequests]: "backoff", // too many connections for the user
} as const satisfies Record<CloseCode, CloseAction>;

/**
 * The action for any close code a client sees: the server's codes by {@link CLOSE_POLICY};
 * anything else (1006 for a cut connection, 1001 for a page going away, a proxy's code) is
 * treated as a lost connection, `backoff`.
 */
export function closeActionFor(code: number): CloseAction {
  return isCloseCode(code) ? CLOSE_POLICY[code] : "backoff";
}

/** Whether `code` is one of the codes the server sends. */
export function isCloseCode(code: number): code is CloseCode {
  return Object.hasOwn(CLOSE_POLICY, code);
}

/** RFC 6455 allows at most 123 bytes of close reason. */
const MAX_REASON_BYTES = 123;

/** A decision to close a connection with a given code and reason. */
export class ConnectionCloseError extends Error {
  /** The close code to send. */
  readonly code: CloseCode;
  /**
   * @param code The close code to send.
   * @param reason Why, for people; cut to 123 bytes when sent.
   */
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
