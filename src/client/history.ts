/**
 * The REST side of the client (`docs/protocol.md#rest`): the caller's threads (list, rename,
 * delete) and a thread's messages, with the bearer token of the socket; and what the history
 * says about one run, which settles runs the socket could not follow. The wire shapes
 * (`ThreadSummary`, `HistoryMessage`) are `src/protocol`'s, shared with the server.
 *
 * @module
 */
import type {
  HistoryMessage,
  MessagesResponse,
  RenameThreadRequest,
  ThreadsResponse,
  ThreadSummary,
} from "../protocol/mod.ts";
import type { RunEnding } from "./run_progress.ts";

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

/** A REST request failed (not a 404 of `listMessages`, which answers `null`). */
export class HistoryRequestError extends Error {
  /** The HTTP status, or 0 when no answer came. */
  readonly status: number;
  /** The answer's `error.code` (e.g. `not_found`), when it had one. */
  readonly code?: string;
  constructor(status: number, message: string, options?: ErrorOptions & { code?: string }) {
    super(message, options);
    this.name = "HistoryRequestError";
    this.status = status;
    this.code = options?.code;
  }
}

/** The bearer token of the REST calls: the socket's. */
export interface TokenProvider {
  /** The token to use now. */
  current(): Promise<string>;
  /** The server answered 401: the next `current()` asks for a fresh token. */
  invalidate(): void;
  /** Whether a fresh token can be had. */
  readonly renewable: boolean;
}

/** Options of {@link HistoryApi}. */
export interface HistoryApiOptions {
  /** The server's HTTP base (`http://host/`). */
  readonly base: URL;
  readonly tokens: TokenProvider;
  readonly fetch: typeof fetch;
}

/** Longest thread title the server takes. */
export const MAX_TITLE_LENGTH = 200;

/** The REST calls; identical GETs in flight share one request. */
export class HistoryApi {
  #o: HistoryApiOptions;
  #requests = new Map<string, Promise<unknown>>();

  constructor(options: HistoryApiOptions) {
    this.#o = options;
  }

  /** The caller's threads, newest first (`GET /api/threads`). */
  async listThreads(options: PageOptions = {}): Promise<HistoryPage<ThreadSummary>> {
    const body = await this.#get(`api/threads${query(options)}`) as ThreadsResponse;
    return { items: body.threads, nextCursor: body.nextCursor };
  }

  /**
   * A page of a thread's messages, oldest first within the page; without `before`, the newest.
   *
   * @returns The page, or `null` when the server does not know the thread.
   */
  async listMessages(
    threadId: string,
    options: PageOptions = {},
  ): Promise<HistoryPage<HistoryMessage> | null> {
    const path = `${threadPath(threadId)}/messages${query(options)}`;
    const body = await this.#get(path, { allowNotFound: true }) as MessagesResponse | null;
    return body === null ? null : { items: body.messages, nextCursor: body.nextCursor };
  }

  /**
   * Renames a thread (`PATCH /api/threads/:id` with `{"title"}`).
   *
   * @returns The thread as the server now has it.
   * @throws {RangeError} (rejection) When `title` is blank or longer than 200 characters once
   *   trimmed; nothing is sent.
   * @throws {HistoryRequestError} (rejection) With status 404 when the thread is not the caller's.
   */
  async renameThread(threadId: string, title: string): Promise<ThreadSummary> {
    const length = typeof title === "string" ? title.trim().length : 0;
    if (length === 0 || length > MAX_TITLE_LENGTH) {
      throw new RangeError(
        `Cannot rename thread: "title" must be 1 to ${MAX_TITLE_LENGTH} characters once trimmed`,
      );
    }
    const request: RenameThreadRequest = { title };
    return await this.#request("PATCH", threadPath(threadId), { body: request }) as ThreadSummary;
  }

  /**
   * Deletes a thread, its messages and runs (`DELETE /api/threads/:id`, 204): a run in flight
   * is cancelled first, and the thread's events are never replayed again.
   *
   * @throws {HistoryRequestError} (rejection) With status 404 when the thread is not the caller's.
   */
  async deleteThread(threadId: string): Promise<void> {
    await this.#request("DELETE", threadPath(threadId));
  }

  /** GETs JSON; identical requests in flight share one (a reset asks for a thread twice). */
  #get(path: string, options: { allowNotFound?: boolean } = {}): Promise<unknown> {
    const key = `${options.allowNotFound ? "?" : "!"}${path}`;
    const pending = this.#requests.get(key);
    if (pending) return pending;
    const request = this.#request("GET", path, options).finally(() => {
      this.#requests.delete(key);
    });
    this.#requests.set(key, request);
    return request;
  }

  async #request(
    method: "GET" | "PATCH" | "DELETE",
    path: string,
    options: { body?: unknown; allowNotFound?: boolean } = {},
  ): Promise<unknown> {
    const url = new URL(path, this.#o.base);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    for (let attempt = 0;; attempt++) {
      const token = await this.#o.tokens.current();
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      let response: Response;
      try {
        response = await this.#o.fetch(url, { method, headers, body });
      } catch (error) {
        throw new HistoryRequestError(0, `${method} ${url.pathname} failed: ${messageOf(error)}`, {
          cause: error,
        });
      }
      if (response.status === 401 && attempt === 0 && this.#o.tokens.renewable) {
        await response.body?.cancel();
        this.#o.tokens.invalidate(); // expired or from another boot: one fresh token, then give up
        continue;
      }
      if (response.status === 404 && options.allowNotFound) {
        await response.body?.cancel();
        return null;
      }
      if (!response.ok) {
        const text = await response.text();
        throw new HistoryRequestError(
          response.status,
          `${method} ${url.pathname} answered ${response.status}: ${text.slice(0, 200)}`,
          { code: errorCodeOf(text) },
        );
      }
      if (response.status === 204) {
        await response.body?.cancel();
        return null;
      }
      return await response.json();
    }
  }
}

/**
 * What the history says about one run:
 * - `ended`: it ended, with its stored reply (partial when it failed or was cancelled);
 * - `running`: it has not ended;
 * - `unknown`: the page holds none of its messages.
 */
export type HistoryVerdict =
  | { readonly kind: "ended"; readonly ending: RunEnding }
  | { readonly kind: "running" }
  | { readonly kind: "unknown" };

/**
 * Reads a run's outcome from its messages: their `runStatus`, and the assistant message's
 * text (the reply, partial when the run failed or was cancelled) and `error`.
 */
export function historyVerdict(messages: readonly HistoryMessage[], runId: string): HistoryVerdict {
  const own = messages.filter((m) => m.runId === runId);
  if (own.length === 0) return { kind: "unknown" };
  const reply = own.find((m) => m.role === "assistant");
  const status = reply?.runStatus ?? own[0].runStatus;
  if (status === "running") return { kind: "running" };
  const text = reply?.text ?? "";
  if (status !== "failed") return { kind: "ended", ending: { status, text } };
  const error = reply?.error ?? { code: "unknown", message: "The run failed" };
  return { kind: "ended", ending: { status, text, error } };
}

/**
 * The HTTP base of a WebSocket URL, the folder `ws` is in: `ws://host/ws` → `http://host/`, and
 * `wss://host/chat/ws` → `https://host/chat/` (agentsocket mounted under a base path).
 */
export function apiBaseFor(url: URL): URL {
  const base = new URL(".", url);
  base.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return base;
}

/** A base URL that relative paths resolve under: `http://host/chat` → `http://host/chat/`. */
export function asFolder(url: URL): URL {
  const folder = new URL(url);
  if (!folder.pathname.endsWith("/")) folder.pathname += "/";
  folder.search = "";
  folder.hash = "";
  return folder;
}

function threadPath(threadId: string): string {
  return `api/threads/${encodeURIComponent(threadId)}`;
}

function query(options: PageOptions): string {
  const params = new URLSearchParams();
  if (options.limit !== undefined) params.set("limit", String(options.limit));
  if (options.before !== undefined) params.set("before", options.before);
  const text = params.toString();
  return text ? `?${text}` : "";
}

function errorCodeOf(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
