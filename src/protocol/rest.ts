/**
 * The REST history's wire shapes (SPEC §2), shared by the server's routes and the client
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
   * The status of the message's run (`running` until it ends). Optional until every server
   * sends it; a client reads its absence as "unknown" (older servers).
   */
  readonly runStatus?: RunStatus;
  /** On the assistant message of a failed run: why it failed (its text is the partial reply). */
  readonly error?: { readonly code: string; readonly message: string };
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
