/**
 * Why a turn did not complete, in words: one sentence for every code a run can fail with
 * (`agent_failed`'s `data.error.code`) and every code a chat can be refused with. The tables
 * are typed by the protocol's and the client's code lists, so a new code is a compile error
 * here until it has its sentence.
 *
 * @module
 */
import type { ChatRefusalCode, TurnStatus } from "../../client/mod.ts";
import type { RunFailureCode } from "../../protocol/mod.ts";

/** A sentence for each code of `agent_failed` (`docs/protocol.md#agents-and-tools`). */
export const RUN_FAILURE_TEXT: Readonly<Record<RunFailureCode, string>> = {
  "provider_unavailable": "The model could not be reached, or it had a server error.",
  "provider_rejected":
    "The model provider refused the request: the server's API key or model name is wrong.",
  "context_too_long": "The conversation is too long for the model. Shorten the message, " +
    "or start a new chat.",
  "rate_limited": "The model provider is limiting requests right now.",
  timeout: "The model stopped sending anything before the reply was finished.",
  "max_steps": "The agent made as many model calls as one reply may take, and stopped.",
  shutdown: "The server shut down before the reply was finished.",
  interrupted: "The server writing this reply stopped before it was finished.",
  unavailable: "The server lost a service it needs while writing the reply.",
  "agent_error": "The agent failed with an internal error.",
};

/** A sentence for each code a chat can be refused with (`docs/protocol.md#errors`). */
export const CHAT_REFUSAL_TEXT: Readonly<Record<ChatRefusalCode, string>> = {
  "bad_frame": "The server could not read the message this page sent.",
  "unknown_type": "The server does not know what this page asked for.",
  "invalid_field": "The server refused the message as malformed.",
  "not_found": "This conversation no longer exists on the server.",
  "thread_busy": "This conversation is still answering another message.",
  "run_finished": "That reply had already finished.",
  "idempotency_conflict": "The server already has a different message with the same id.",
  unavailable: "The server is missing a service it needs, and saved nothing.",
  draining: "The server is restarting.",
  "rate_limited": "Messages are being sent too fast.",
  "too_many_runs":
    "Too many replies are being written at once. Wait for one to finish, or stop one.",
  "already_resolved": "That was already decided.",
  refused: "The application serving this chat declined the message.",
  "frame_too_large": "The message is too long to send. Shorten it.",
  undeliverable: "The connection kept dropping before the server confirmed the message.",
};

/** When the server lost a run: nobody can tell how it ended. */
export const LOST_TEXT = "The server lost this reply (it restarted without keeping it), so " +
  "how it ended is unknown.";

/** Options of {@link failureText}. */
export interface FailureTextOptions {
  /** With `rate_limited`: how long the provider asked to wait. */
  readonly retryAfterMs?: number;
}

/**
 * Says why a turn did not complete.
 *
 * @param status The turn's status.
 * @param code Its failure or refusal code, when known.
 * @returns A sentence, or `undefined` for a turn that completed, was stopped, or is going.
 */
export function failureText(
  status: TurnStatus,
  code: string | undefined,
  options: FailureTextOptions = {},
): string | undefined {
  switch (status) {
    case "sending":
    case "running":
    case "completed":
    case "cancelled":
      return undefined;
    case "failed":
      return withWait(textFor(RUN_FAILURE_TEXT, code) ?? unknownFailure(code), options);
    case "refused":
      return withWait(textFor(CHAT_REFUSAL_TEXT, code) ?? unknownFailure(code), options);
    case "lost":
      return LOST_TEXT;
    default: {
      const unknown: never = status;
      return unknown;
    }
  }
}

function textFor(table: Readonly<Record<string, string>>, code: string | undefined) {
  return code !== undefined && Object.hasOwn(table, code) ? table[code] : undefined;
}

function unknownFailure(code: string | undefined): string {
  return code === undefined || code === "unknown"
    ? "The reply failed, for a reason the server did not say."
    : `The reply failed (${code}).`;
}

function withWait(sentence: string, options: FailureTextOptions): string {
  const wait = options.retryAfterMs;
  if (wait === undefined || !(wait > 0)) return sentence;
  return `${sentence} The provider asked to wait ${Math.ceil(wait / 1000)} s.`;
}
