/**
 * The REST history (SPEC §2) as the client reads it; the wire shapes (`ThreadSummary`,
 * `HistoryMessage`) are `src/protocol`'s, shared with the server.
 *
 * @module
 */
export type { HistoryMessage, ThreadSummary } from "../protocol/mod.ts";

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
