/**
 * The HTTP routes (docs/protocol.md#rest) on hono: health, metrics, dev tokens, the REST
 * history, the page, and `/ws`, which hands over to `ws/upgrade.ts`. Every route can be mounted
 * under a base path (`/chat/ws`, `/chat/api/threads`, ...), so an application can serve
 * agentsocket beside its own routes.
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { MAX_USER_ID_LENGTH } from "../auth/mod.ts";
import type { DevTokenIssuer } from "../auth/mod.ts";
import { InvalidTokenError } from "../connection/mod.ts";
import type { ConnectionReadinessChecker, Principal, TokenVerifier } from "../connection/mod.ts";
import type { ServerMetrics } from "../metrics/mod.ts";
import type { EventEngine } from "../bus/mod.ts";
import type {
  ApiErrorResponse,
  MessagesResponse,
  ThreadsResponse,
  ThreadSummary,
} from "../protocol/mod.ts";
import type { ChatStore, MessageRecord } from "../store/mod.ts";
import { handleUpgrade } from "../ws/mod.ts";
import type { UpgradeDeps } from "../ws/mod.ts";

/**
 * Deletes a thread for `DELETE /api/threads/:id`: more than a store call, since a run in
 * flight on it is cancelled first and its events are purged from the user's log.
 */
export interface ThreadDeleter {
  /** Resolves false when the thread is not the user's. */
  delete(userId: string, threadId: string): Promise<boolean>;
}

/** What the routes need. */
export interface AppDeps {
  readonly store: ChatStore;
  /** Deletes threads (`DELETE /api/threads/:id`). */
  readonly threads: ThreadDeleter;
  /** Fills a message's seq in the moment before the store has recorded it. */
  readonly engine: Pick<EventEngine, "runSeqs">;
  readonly verifier: TokenVerifier;
  /** Present only in development; absent means `/auth/dev-token` answers 404. */
  readonly devTokens?: DevTokenIssuer;
  readonly readiness: ConnectionReadinessChecker;
  readonly metrics: ServerMetrics;
  readonly upgrade: UpgradeDeps;
  readonly log: Logger;
  /**
   * Where every route is mounted: `""` (the default) or a path such as `/chat`, with a leading
   * and no trailing slash (see {@link checkBasePath}).
   */
  readonly basePath?: string;
  /** The chat page's HTML, served at `<base>/`; absent: no page (404). */
  readonly pageHtml?: string;
  /** Extra static files served as is, by path under the base path (the page's scripts). */
  readonly staticFiles?: ReadonlyMap<string, { body: string; type: string }>;
}

/** The connection info Deno passes to a serve handler. */
export interface ServeInfo {
  readonly remoteAddr: {
    /** Absent for a Unix socket (never loopback for the dev-token rule). */
    readonly hostname?: string;
    readonly port?: number;
    readonly transport?: string;
  };
}

type Env = { Bindings: ServeInfo };

/** Default and largest page size of the REST listings (docs/protocol.md#rest). */
export const PAGE_LIMITS = { default: 50, max: 200 } as const;

/**
 * Builds the HTTP application.
 *
 * @returns An object whose `fetch(request, info)` is given to `Deno.serve`.
 */
export function createApp(
  deps: AppDeps,
): { fetch: (request: Request, info: ServeInfo) => Response | Promise<Response> } {
  const base = deps.basePath ?? "";
  const root = new Hono<Env>();
  const app = base === "" ? root : root.basePath(base);
  const wsPath = `${base}/ws`;

  app.get("/ws", (c) => handleUpgrade(c.req.raw, deps.upgrade));

  app.get("/health/live", (c) => c.json({ status: "live" }));
  app.get("/health/ready", (c) => {
    const report = deps.readiness.report();
    return c.json(report, report.status === "ready" ? 200 : 503);
  });
  app.get("/metrics", (c) =>
    c.body(deps.metrics.render(), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }));

  app.post("/auth/dev-token", async (c) => {
    if (!deps.devTokens || !isLoopback(c.env?.remoteAddr?.hostname)) return notFound(c);
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return apiError(c, 400, "bad_request", 'Body must be JSON: {"userId":"alice"}');
    }
    const userId = (body as { userId?: unknown } | null)?.userId;
    if (typeof userId !== "string" || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
      return apiError(
        c,
        400,
        "invalid_field",
        `Field "userId" must be a string of 1 to ${MAX_USER_ID_LENGTH} characters`,
      );
    }
    return c.json({ token: await deps.devTokens.issue(userId) });
  });

  app.get("/api/threads", async (c) => {
    const principal = await authenticate(c, deps.verifier);
    if (principal instanceof Response) return principal;
    const page = pageRequest(c);
    if (page instanceof Response) return page;
    try {
      const result = await deps.store.listThreads(principal.userId, page);
      const body: ThreadsResponse = {
        threads: result.items,
        ...(result.nextCursor ? { nextCursor: result.nextCursor } : {}),
      };
      return c.json(body);
    } catch (error) {
      return storeFailure(c, deps, error);
    }
  });

  app.get("/api/threads/:id/messages", async (c) => {
    const principal = await authenticate(c, deps.verifier);
    if (principal instanceof Response) return principal;
    const page = pageRequest(c);
    if (page instanceof Response) return page;
    try {
      const result = await deps.store.listMessages(principal.userId, c.req.param("id"), page);
      if (result === null) return apiError(c, 404, "not_found", "Thread not found");
      const body: MessagesResponse = {
        messages: await withSeqs(deps, principal.userId, result.items),
        ...(result.nextCursor ? { nextCursor: result.nextCursor } : {}),
      };
      return c.json(body);
    } catch (error) {
      return storeFailure(c, deps, error);
    }
  });

  app.patch("/api/threads/:id", async (c) => {
    const principal = await authenticate(c, deps.verifier);
    if (principal instanceof Response) return principal;
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return apiError(c, 400, "bad_request", 'Body must be JSON: {"title":"New title"}');
    }
    const title = (body as { title?: unknown } | null)?.title;
    if (typeof title !== "string") {
      return apiError(c, 400, "invalid_field", 'Field "title" must be a string');
    }
    try {
      // A title empty or too long once trimmed is a RangeError: 400 below.
      const thread = await deps.store.renameThread(principal.userId, c.req.param("id"), title);
      if (thread === null) return apiError(c, 404, "not_found", "Thread not found");
      const answer: ThreadSummary = thread;
      return c.json(answer);
    } catch (error) {
      return storeFailure(c, deps, error);
    }
  });

  app.delete("/api/threads/:id", async (c) => {
    const principal = await authenticate(c, deps.verifier);
    if (principal instanceof Response) return principal;
    try {
      const deleted = await deps.threads.delete(principal.userId, c.req.param("id"));
      if (!deleted) return apiError(c, 404, "not_found", "Thread not found");
      return c.body(null, 204);
    } catch (error) {
      return storeFailure(c, deps, error);
    }
  });

  const pageHtml = deps.pageHtml;
  if (pageHtml !== undefined) {
    // The page's URLs are relative to it (`ws`, `api/threads`, `static/chat.css`), so under a
    // base path it lives at `<base>/`, and `<base>` without the slash redirects there.
    root.get(`${base}/`, (c) => c.html(pageHtml));
    if (base !== "") root.get(base, (c) => c.redirect(`${base}/`, 308));
    for (const [path, file] of deps.staticFiles ?? []) {
      app.get(path, (c) => c.body(file.body, 200, { "content-type": file.type }));
    }
  }

  root.notFound((c) => notFound(c));
  root.onError((error, c) => {
    deps.log.error("request failed", { path: c.req.path, error: errorMessage(error) });
    return apiError(c, 500, "internal", "Internal error");
  });

  return {
    fetch(request, info) {
      // The WebSocket route is the hot path of a connection burst: skip the router for it.
      if (request.method === "GET" && new URL(request.url).pathname === wsPath) {
        return handleUpgrade(request, deps.upgrade);
      }
      return root.fetch(request, info);
    },
  };
}

/**
 * Checks a base path: `""`, or `/` followed by segments of letters, digits, `-`, `_`, `.` and
 * `~` separated by `/`, without a trailing slash (`/chat`, `/api/agent`). `/` alone is `""`.
 *
 * @returns The base path to mount at.
 * @throws {RangeError} naming what is wrong.
 */
export function checkBasePath(basePath: string): string {
  if (basePath === "" || basePath === "/") return "";
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath) || /\/\.{1,2}(\/|$)/.test(basePath)) {
    throw new RangeError(
      `must be "" or a path like "/chat" (a leading "/", no trailing "/", segments of letters, digits, "-", "_", ".", "~"), received ${
        JSON.stringify(basePath)
      }`,
    );
  }
  return basePath;
}

/**
 * A message's seq is recorded by the store just after its event is published; a read in that
 * moment finds null. The event log already knows it: ask it, so history always merges with the
 * live stream by seq.
 */
async function withSeqs(
  deps: AppDeps,
  userId: string,
  messages: readonly MessageRecord[],
): Promise<readonly MessageRecord[]> {
  const pending = [...new Set(messages.filter((m) => m.seq === null).map((m) => m.runId))];
  if (pending.length === 0) return messages;
  let seqs;
  try {
    seqs = await deps.engine.runSeqs(userId, pending);
  } catch {
    return messages; // the engine is down: the store's null stands
  }
  return messages.map((m) => {
    if (m.seq !== null) return m;
    const known = seqs.get(m.runId);
    const seq = m.role === "user" ? known?.startSeq : known?.endSeq;
    return seq === undefined ? m : { ...m, seq };
  });
}

async function authenticate(
  c: Context<Env>,
  verifier: TokenVerifier,
): Promise<Principal | Response> {
  const header = c.req.header("authorization");
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match) return unauthorized(c, "Authorization: Bearer <token> is required");
  try {
    return await verifier.verify(match[1]);
  } catch (error) {
    if (error instanceof InvalidTokenError) return unauthorized(c, error.message);
    return apiError(c, 503, "unavailable", "Token verification is unavailable; try again");
  }
}

function pageRequest(c: Context<Env>): { limit: number; before?: string } | Response {
  const rawLimit = c.req.query("limit");
  let limit: number = PAGE_LIMITS.default;
  if (rawLimit !== undefined) {
    limit = Number(rawLimit);
    if (!/^\d+$/.test(rawLimit) || limit < 1 || limit > PAGE_LIMITS.max) {
      return apiError(
        c,
        400,
        "invalid_field",
        `Query "limit" must be an integer from 1 to ${PAGE_LIMITS.max}`,
      );
    }
  }
  const before = c.req.query("before");
  return before === undefined || before === "" ? { limit } : { limit, before };
}

function storeFailure(c: Context<Env>, deps: AppDeps, error: unknown): Response {
  if (error instanceof RangeError) return apiError(c, 400, "invalid_field", error.message);
  deps.log.warn("store request failed", { path: c.req.path, error: errorMessage(error) });
  deps.readiness.reportFailure("postgres");
  return apiError(c, 503, "unavailable", "The store is unavailable; try again");
}

function apiError(
  c: Context<Env>,
  status: 400 | 401 | 404 | 500 | 503,
  code: string,
  message: string,
) {
  const body: ApiErrorResponse = { error: { code, message } };
  return c.json(body, status);
}

function unauthorized(c: Context<Env>, message: string): Response {
  c.header("www-authenticate", 'Bearer error="invalid_token"');
  return apiError(c, 401, "unauthorized", message);
}

function notFound(c: Context<Env>): Response {
  return apiError(c, 404, "not_found", "Not found");
}

/** Whether an address is the loopback interface (127.0.0.0/8, ::1, or ::ffff:127.x). */
export function isLoopback(hostname: string | undefined): boolean {
  if (hostname === undefined) return false;
  const host = hostname.replace(/^\[|\]$/g, "");
  return host === "::1" || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}
