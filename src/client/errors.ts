/**
 * The errors the client rejects with. Each names what happened and what to do.
 *
 * @module
 */
import type { ErrorCode } from "../protocol/mod.ts";

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

/** The server refused the chat (an `error` frame answering it); no run was started. */
export class ChatRefusedError extends Error {
  /** The `error` frame's code, e.g. `thread_busy`. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(`Chat refused (${code}): ${message}`);
    this.name = "ChatRefusedError";
    this.code = code;
  }
}

/** The run ended without a reply: `agent_failed` or `agent_cancelled`. */
export class RunFailedError extends Error {
  /** `failed` or `cancelled`. */
  readonly status: "failed" | "cancelled";
  /** `data.error.code` of `agent_failed`, when known. */
  readonly code?: string;
  constructor(status: "failed" | "cancelled", message: string, code?: string) {
    super(message);
    this.name = "RunFailedError";
    this.status = status;
    this.code = code;
  }
}

/** The server no longer knows the run (its history was lost): its outcome cannot be known. */
export class RunLostError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RunLostError";
  }
}
