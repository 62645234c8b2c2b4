/**
 * A throwaway `redis-server` on a free 127.0.0.1 port: no persistence, its own temp folder,
 * stopped for sure on dispose.
 *
 * @module
 */
import { findRedisServer } from "./binaries.ts";
import { freePort } from "./free_port.ts";
import { pollUntil } from "./poll.ts";
import { probeRedis } from "./probe.ts";
import { spawnServer, stopChild } from "./process.ts";

/** A Redis server of one's own; `await using` stops it and removes its folder. */
export interface ThrowawayRedis extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM, then SIGKILL after a grace period). */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port, with empty data (stopping it first if it runs). */
  restart(): Promise<void>;
  /** Stops the server for sure and removes its temp folder; idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@link startThrowawayRedis}. */
export interface ThrowawayRedisOptions {
  /**
   * How long a start may take before it fails, in milliseconds.
   *
   * @default 20000
   */
  startTimeoutMs?: number;
  /** Aborts a start in progress. */
  signal?: AbortSignal;
}

const PORT_ATTEMPTS = 5;
const STOP_GRACE_MS = 5_000;

/**
 * Starts `redis-server` on a free port and waits until it answers `PING`.
 *
 * @throws {Error} when `redis-server` is not installed or does not come up in time.
 */
export async function startThrowawayRedis(
  options: ThrowawayRedisOptions = {},
): Promise<ThrowawayRedis> {
  const program = await findRedisServer();
  if (!program) throw new Error("redis-server is not installed (apt-get install redis-server)");
  const dir = await Deno.makeTempDir({ prefix: "agentsocket-redis-" });
  try {
    for (let attempt = 1;; attempt++) {
      const server = new RedisProcess(program, dir, freePort(), options);
      try {
        await server.start();
        return server;
      } catch (error) {
        // Another process may take the port between freePort() and the bind: try another.
        if (!(error instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

class PortTakenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PortTakenError";
  }
}

class RedisProcess implements ThrowawayRedis {
  readonly url: string;
  readonly port: number;
  #program: string;
  #dir: string;
  #options: ThrowawayRedisOptions;
  #child: Deno.ChildProcess | undefined;
  #disposed = false;

  constructor(program: string, dir: string, port: number, options: ThrowawayRedisOptions) {
    this.#program = program;
    this.#dir = dir;
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.#options = options;
  }

  async start(): Promise<void> {
    if (this.#disposed) throw new Error("This throwaway Redis has been disposed");
    // Empty data on every start: no dump is written (--save ""), and none is left to load.
    await Deno.remove(`${this.#dir}/dump.rdb`).catch(() => {});
    const logFile = `${this.#dir}/redis.log`;
    await Deno.writeTextFile(logFile, "");
    const child = await spawnServer(this.#program, [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      this.#dir,
      "--daemonize",
      "no",
      "--logfile",
      logFile,
      "--loglevel",
      "warning",
    ], { cwd: this.#dir });
    this.#child = child;
    let exited = false;
    child.status.then(() => exited = true);
    try {
      await pollUntil(`redis-server on 127.0.0.1:${this.port}`, async () => {
        if (exited) throw new Error("it exited");
        return (await probeRedis(this.url, { timeoutMs: 1_000 })).ok ? true : undefined;
      }, { timeoutMs: this.#options.startTimeoutMs ?? 20_000, signal: this.#options.signal });
    } catch (error) {
      await stopChild(child, "SIGKILL", STOP_GRACE_MS);
      this.#child = undefined;
      const log = await Deno.readTextFile(logFile).catch(() => "");
      const message = `redis-server on 127.0.0.1:${this.port} did not start: ${
        error instanceof Error ? error.message : String(error)
      }\n${log.trim().split("\n").slice(-10).join("\n")}`;
      if (/Address already in use/i.test(log)) throw new PortTakenError(message);
      throw new Error(message, { cause: error });
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child) await stopChild(child, "SIGTERM", STOP_GRACE_MS);
  }

  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child) await stopChild(child, "SIGKILL", STOP_GRACE_MS);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
