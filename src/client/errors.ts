/**
 * The errors the client rejects with. Each names what happened and carries a typed `code`, so
 * an application can tell the user what to do (cancel a run on `too_many_runs`, wait on
 * `rate_limited`, shorten the message on `context_too_long` or `frame_too_large`, try again
 * later on `provider_unavailable`).
 *
 * @module
 */
import { RUN_FAILURE_CODES } from "../protocol/mod.ts";
import type { ErrorCode, ErrorInfo, RunFailureCode } from "../protocol/mod.ts";

/** The client is closed: by `close()`, or for good after a close code that forbids retrying. */
export class ClientClosedError extends Error {
  /** The close code that ended the client, when the server chose it. */
  readonly code?: number;
  constructor(message: string, options?: ErrorOptions & { code?: number }) {
    super(message, options);
    this.name = "ClientClosedError";
    this.code = options?.code;
  }
}

/**
 * Why a chat was refused: an `error` frame's code, or one of the client's own refusals:
 * - `frame_too_large`: the chat would not fit in one frame of the server's limit; never sent;
 * - `undeliverable`: every connection the chat was sent on was cut before its ack.
 */
export type ChatRefusalCode = ErrorCode | "frame_too_large" | "undeliverable";

/** The chat was refused (by the server, or by the client before sending); no run was started. */
export class ChatRefusedError extends Error {
  /** e.g. `thread_busy`, `too_many_runs`, `rate_limited`, `frame_too_large`, `refused`. */
  readonly code: ChatRefusalCode;
  /** With `code` `refused`: the host application's own code (its `beforeRun` hook refused). */
  readonly refusal?: string;
  constructor(
    code: ChatRefusalCode,
    message: string,
    options?: ErrorOptions & { refusal?: string },
  ) {
    super(`Chat refused (${options?.refusal ?? code}): ${message}`, options);
    this.name = "ChatRefusedError";
    this.code = code;
    if (options?.refusal !== undefined) this.refusal = options.refusal;
  }
}

/**
 * A frame would exceed the server's frame limit (`ready.maxFrameBytes`, 65536 when the server
 * does not say): it is refused here and never sent, since the server would close the
 * connection with 1009.
 */
export class FrameTooLargeError extends ChatRefusedError {
  /** The frame's size, in UTF-8 bytes. */
  readonly bytes: number;
  /** The limit it exceeds. */
  readonly limit: number;
  constructor(what: string, bytes: number, limit: number) {
    super(
      "frame_too_large",
      `the ${what} frame is ${bytes} bytes, more than the server's limit of ${limit}`,
    );
    this.name = "FrameTooLargeError";
    this.bytes = bytes;
    this.limit = limit;
  }
}

/** The run ended without a reply: `agent_failed` or `agent_cancelled`. */
export class RunFailedError extends Error {
  /** `failed` or `cancelled`. */
  readonly status: "failed" | "cancelled";
  /**
   * `agent_failed`'s `data.error.code` (e.g. `context_too_long`, `provider_unavailable`,
   * `rate_limited`); `undefined` for a cancelled run, or a code this version does not know
   * (then {@link RunFailedError.info} holds it).
   */
  readonly code?: RunFailureCode;
  /** `agent_failed`'s `data.error` as it came. */
  readonly info?: ErrorInfo;
  /** With `rate_limited`: how long the provider asked to wait, when it said. */
  readonly retryAfterMs?: number;
  /** The reply so far (the run's partial text). */
  readonly text: string;
  constructor(
    status: "failed" | "cancelled",
    message: string,
    options: { info?: ErrorInfo; text?: string } = {},
  ) {
    super(message);
    this.name = "RunFailedError";
    this.status = status;
    this.info = options.info;
    this.code = runFailureCode(options.info?.code);
    this.retryAfterMs = options.info?.retryAfterMs;
    this.text = options.text ?? "";
  }
}

/** The server no longer knows the run (its history was lost): its outcome cannot be known. */
export class RunLostError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RunLostError";
  }
}

/**
 * Why an approval was not taken: the server's `not_found` or `run_finished`, another code of
 * an `error` frame, or `frame_too_large` (the reason is too long to send).
 */
export type ApprovalRefusalCode = ErrorCode | "frame_too_large";

/** An `approve` was refused: the tool call is unknown, or its run has ended. */
export class ApprovalRefusedError extends Error {
  readonly code: ApprovalRefusalCode;
  /** The tool call it answered. */
  readonly toolCallId: string;
  constructor(code: ApprovalRefusalCode, toolCallId: string, message: string) {
    super(`Approval refused (${code}): ${message}`);
    this.name = "ApprovalRefusedError";
    this.code = code;
    this.toolCallId = toolCallId;
  }
}

function runFailureCode(code: string | undefined): RunFailureCode | undefined {
  return (RUN_FAILURE_CODES as readonly (string | undefined)[]).includes(code)
    ? code as RunFailureCode
    : undefined;
}
