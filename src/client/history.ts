/**
 * The REST history (SPEC §2) as the client reads it. These shapes are the HTTP API's, not
 * WebSocket frames, so they live here rather than in `src/protocol`.
 *
 * @module
 */

/** One thread of the caller, from `GET /api/threads`. */
export interface ThreadSummary {
  readonly id: string;
  readonly title: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** One stored message, from `GET /api/threads/:id/messages`. */
export interface HistoryMessage {
  readonly id: string;
  readonly role: "user" | "assistant";
  readonly text: string;
  readonly runId: string;
  /** The seq of the run's `agent_started` (user) or terminal event (assistant). */
  readonly seq: number | null;
  readonly createdAt: string;
}

/** One page of a listing; `nextCursor` names the next, older page. */
export interface HistoryPage<T> {
  readonly items: readonly T[];
  readonly nextCursor?: string;
}

/** Paging of a listing. */
export interface PageOptions {
  /** At most this many (1 to 200). @default 50 */
  readonly limit?: number;
  /** The `nextCursor` of the previous page. */
  readonly before?: string;
}

/** A REST request failed (not a 404, which the listing methods answer with `null`). */
export class HistoryRequestError extends Error {
  /** The HTTP status, or 0 when no answer came. */
  readonly status: number;
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HistoryRequestError";
    this.status = status;
  }
}

/** The HTTP base of a WebSocket URL: `ws://host/ws` → `http://host/`. */
export function apiBaseFor(url: URL): URL {
  const base = new URL("/", url);
  base.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return base;
}
