/**
 * Does a server answer? A real connection and a real round trip (`select 1`, `PING`), bounded
 * in time. Also a tiny Redis client for the few commands the service tests need.
 *
 * @module
 */
import postgres from "postgres";
import { withDeadline } from "./poll.ts";

/** The answer of a probe. */
export type ProbeResult = { ok: true } | { ok: false; reason: string };

/** Options of the probes. */
export interface ProbeOptions {
  /**
   * Gives up after this many milliseconds.
   *
   * @default 2000
   */
  timeoutMs?: number;
}

/**
 * Connects to PostgreSQL at `url` and runs `select 1`.
 *
 * @returns `ok`, or why not (never the password).
 */
export async function probePostgres(url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  let sql: postgres.Sql;
  try {
    sql = postgres(url, {
      max: 1,
      connect_timeout: Math.max(1, Math.ceil(timeoutMs / 1000)),
      fetch_types: false,
      prepare: false,
      onnotice: () => {},
      connection: { application_name: "agentsocket_probe" },
    });
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  }
  const query = sql`select 1 as one`;
  query.catch(() => {}); // a late rejection after the deadline is not unhandled
  try {
    const rows = await withDeadline(query, timeoutMs, "select 1");
    return rows[0]?.one === 1 ? { ok: true } : { ok: false, reason: "select 1 gave no row" };
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  } finally {
    await sql.end({ timeout: 0 }).catch(() => {});
  }
}

/**
 * Connects to Redis at `url` (`redis://` or `rediss://`, with `AUTH` and a database when the
 * URL names them) and sends `PING`.
 *
 * @returns `ok`, or why not (never the password).
 */
export async function probeRedis(url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  try {
    const [reply] = await redisCommands(url, [["PING"]], options);
    return reply === "PONG" ? { ok: true } : { ok: false, reason: `PING gave ${String(reply)}` };
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  }
}

/** A decoded RESP2 reply. */
export type RedisReply = string | number | null | RedisReply[];

/** An error reply (`-ERR …`) from Redis. */
export class RedisReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisReplyError";
  }
}

/**
 * Opens one connection, sends `commands` in a pipeline and returns their replies.
 *
 * @throws {RedisReplyError} on the first error reply.
 * @throws {DeadlineError} when it takes longer than `options.timeoutMs`.
 */
export async function redisCommands(
  url: string,
  commands: readonly (readonly string[])[],
  options: ProbeOptions = {},
): Promise<RedisReply[]> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const target = new URL(url);
  if (target.protocol !== "redis:" && target.protocol !== "rediss:") {
    throw new TypeError(`Cannot probe ${target.protocol} as Redis: expected redis: or rediss:`);
  }
  const hostname = target.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = Number(target.port || 6379);
  const setup: string[][] = [];
  const password = decodeURIComponent(target.password);
  const username = decodeURIComponent(target.username);
  if (password) setup.push(username ? ["AUTH", username, password] : ["AUTH", password]);
  const db = target.pathname.replace(/^\//, "");
  if (db) setup.push(["SELECT", db]);

  const controller = new AbortController();
  let conn: Deno.Conn | undefined;
  const exchange = async () => {
    conn = target.protocol === "rediss:"
      ? await Deno.connectTls({ hostname, port })
      : await Deno.connect({ hostname, port, signal: controller.signal });
    const all = [...setup, ...commands];
    await writeAll(conn, encodeCommands(all));
    const reader = new RespReader(conn);
    const replies: RedisReply[] = [];
    for (let i = 0; i < all.length; i++) replies.push(await reader.next());
    return replies.slice(setup.length);
  };
  const pending = exchange();
  pending.catch(() => {}); // rejected late when the deadline closed the connection
  try {
    return await withDeadline(pending, timeoutMs, `Redis at ${hostname}:${port}`);
  } finally {
    controller.abort();
    try {
      conn?.close();
    } catch {
      // already closed
    }
    await pending.catch(() => {});
  }
}

function encodeCommands(commands: readonly (readonly string[])[]): Uint8Array {
  const encoder = new TextEncoder();
  let text = "";
  for (const command of commands) {
    text += `*${command.length}\r\n`;
    for (const arg of command) text += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
  }
  return encoder.encode(text);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** Reads RESP2 replies from a connection. */
class RespReader {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(0);
  #decoder = new TextDecoder();

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async next(): Promise<RedisReply> {
    const line = await this.#line();
    const body = line.slice(1);
    switch (line[0]) {
      case "+":
        return body;
      case "-":
        throw new RedisReplyError(body);
      case ":":
        return Number(body);
      case "$": {
        const length = Number(body);
        if (length < 0) return null;
        const bytes = await this.#bytes(length + 2);
        return this.#decoder.decode(bytes.subarray(0, length));
      }
      case "*": {
        const count = Number(body);
        if (count < 0) return null;
        const items: RedisReply[] = [];
        for (let i = 0; i < count; i++) items.push(await this.next());
        return items;
      }
      default:
        throw new SyntaxError(`Unexpected Redis reply: ${line.slice(0, 40)}`);
    }
  }

  async #line(): Promise<string> {
    while (true) {
      const end = this.#buffer.findIndex((b, i) => b === 13 && this.#buffer[i + 1] === 10);
      if (end >= 0) {
        const line = this.#decoder.decode(this.#buffer.subarray(0, end));
        this.#buffer = this.#buffer.subarray(end + 2);
        return line;
      }
      await this.#fill();
    }
  }

  async #bytes(length: number): Promise<Uint8Array> {
    while (this.#buffer.length < length) await this.#fill();
    const bytes = this.#buffer.subarray(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return bytes;
  }

  async #fill(): Promise<void> {
    const chunk = new Uint8Array(4096);
    const n = await this.#conn.read(chunk);
    if (n === null) throw new Deno.errors.UnexpectedEof("Redis closed the connection");
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = next;
  }
}

/** A short reason for a failed probe; postgres.js and Deno errors carry a useful message. */
function reasonOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const text = error.message.split("\n")[0];
    return typeof code === "string" && !text.includes(code) ? `${code}: ${text}` : text;
  }
  return String(error);
}

/** `host:port` of a service URL, for messages (never the credentials). */
export function describeEndpoint(url: string): string {
  try {
    const parsed = new URL(url);
    const defaultPort = parsed.protocol.startsWith("redis") ? "6379" : "5432";
    return `${parsed.hostname}:${parsed.port || defaultPort}`;
  } catch {
    return "(unparsable URL)";
  }
}
