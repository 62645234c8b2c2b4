/**
 * The REST history's wire shapes (`docs/protocol.md#rest`), shared by the server's routes and the client
 * library like the WebSocket frames are.
 *
 * @module
 */
import type { RunStatus } from "./frames.ts";

/** One thread of the caller, from `GET /api/threads`. */
export interface ThreadSummary {
  readonly id: string;
  readonly title: string;
  /** ISO 8601 UTC. */
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** One stored message, from `GET /api/threads/:id/messages`. */
export interface HistoryMessage {
  readonly id: string;
  readonly role: "user" | "assistant";
  readonly text: string;
  readonly runId: string;
  /**
   * The seq of the run's `agent_started` (user message) or terminal event (assistant message);
   * null only while that event has not been published yet.
   */
  readonly seq: number | null;
  readonly createdAt: string;
  /**
   * The status of the run the message belongs to; the assistant message of a failed or
   * cancelled run holds its reply so far.
   */
  readonly runStatus: RunStatus;
  /** Why the run failed: only on the assistant message of a failed run. */
  readonly error?: { readonly code: string; readonly message: string };
}

/** The body of `PATCH /api/threads/:id`: the new title (1 to 200 characters once trimmed). */
export interface RenameThreadRequest {
  readonly title: string;
}

/** The body of `GET /api/threads`: newest first; `nextCursor` only when an older page exists. */
export interface ThreadsResponse {
  readonly threads: readonly ThreadSummary[];
  readonly nextCursor?: string;
}

/** The body of `GET /api/threads/:id/messages`: oldest first within the page. */
export interface MessagesResponse {
  readonly messages: readonly HistoryMessage[];
  readonly nextCursor?: string;
}

/** The body of every REST error answer. */
export interface ApiErrorResponse {
  readonly error: { readonly code: string; readonly message: string };
}
