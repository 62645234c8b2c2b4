/**
 * A throwaway PostgreSQL server on a free 127.0.0.1 port: a fresh cluster in a temp folder
 * (trust auth, fsync off), its socket in that folder, stopped for sure on dispose.
 *
 * @module
 */
import { findPostgresBinaries } from "./binaries.ts";
import { freePort } from "./free_port.ts";
import { DeadlineError, pollUntil, withDeadline } from "./poll.ts";
import { probePostgres } from "./probe.ts";
import {
  isRoot,
  OutputTail,
  postgresUser,
  runCommand,
  type ServiceUser,
  spawnServer,
  stopChild,
} from "./process.ts";

/** A PostgreSQL server of one's own; `await using` stops it and removes its data. */
export interface ThrowawayPostgres extends AsyncDisposable {
  /** `postgres://postgres:postgres@127.0.0.1:<port>/postgres` (trust auth: any password). */
  readonly url: string;
  readonly port: number;
  /** Stops the server (fast shutdown: SIGINT, then SIGKILL after a grace period). */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL, as a crash would; `start()` then recovers the data. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data folder (a no-op while it runs). */
  start(): Promise<void>;
  /** Stops the server for sure and removes its temp folder; idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@link startThrowawayPostgres}. */
export interface ThrowawayPostgresOptions {
  /**
   * How long a start may take before it fails, in milliseconds.
   *
   * @default 30000
   */
  startTimeoutMs?: number;
  /** Aborts a start in progress. */
  signal?: AbortSignal;
}

const PORT_ATTEMPTS = 5;
const STOP_GRACE_MS = 15_000;
/** After the postmaster is gone, its orphaned backends notice and exit; this bounds the wait. */
const ORPHAN_WAIT_MS = 10_000;
/** What a start says while the previous server's processes still hold the data folder. */
const STILL_HELD = /pre-existing shared memory block|lock file .* already exists/i;

/**
 * Creates a cluster with `initdb`, starts `postgres` on a free port and waits until it runs a
 * query. As root, both run as the `postgres` user (PostgreSQL refuses root).
 *
 * @throws {Error} when PostgreSQL is not installed, or does not come up in time.
 */
export async function startThrowawayPostgres(
  options: ThrowawayPostgresOptions = {},
): Promise<ThrowawayPostgres> {
  const binaries = await findPostgresBinaries();
  if (!binaries) {
    throw new Error("PostgreSQL's server is not installed (apt-get install postgresql)");
  }
  const user = isRoot() ? await postgresUser() : undefined;
  const dir = await Deno.makeTempDir({ prefix: "agentsocket-pg-" });
  try {
    if (user) await Deno.chown(dir, user.uid, user.gid);
    const init = await runCommand(`${binaries.bin}/initdb`, [
      "--pgdata",
      `${dir}/data`,
      "--username",
      "postgres",
      "--auth",
      "trust",
      "--encoding",
      "UTF8",
      "--locale",
      "C",
      "--no-sync",
    ], { timeoutMs: 60_000, user, cwd: dir });
    if (init.code !== 0) {
      throw new Error(`initdb failed (exit ${init.code}): ${lastLines(init.stderr + init.stdout)}`);
    }
    for (let attempt = 1;; attempt++) {
      const server = new PostgresProcess(binaries.bin, dir, freePort(), { ...options, user });
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

interface Running {
  child: Deno.ChildProcess;
  stderr: OutputTail;
  exited: boolean;
}

class PostgresProcess implements ThrowawayPostgres {
  readonly url: string;
  readonly port: number;
  #bin: string;
  #dir: string;
  #options: ThrowawayPostgresOptions & { user?: ServiceUser };
  #running: Running | undefined;
  #disposed = false;

  constructor(
    bin: string,
    dir: string,
    port: number,
    options: ThrowawayPostgresOptions & { user?: ServiceUser },
  ) {
    this.#bin = bin;
    this.#dir = dir;
    this.port = port;
    this.url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
    this.#options = options;
  }

  async start(): Promise<void> {
    if (this.#disposed) throw new Error("This throwaway PostgreSQL has been disposed");
    if (this.#running && !this.#running.exited) return;
    if (this.#running) await this.#reap(this.#running);
    const timeoutMs = this.#options.startTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    // A start right after a kill can find the old backends still holding the data folder:
    // try again until they are gone or the deadline passes.
    await pollUntil(
      `PostgreSQL on 127.0.0.1:${this.port}`,
      () => this.#startOnce(Math.max(1_000, deadline - Date.now())),
      { timeoutMs, intervalMs: 100, signal: this.#options.signal },
    );
  }

  /** One start; `undefined` when the data folder is still held and it is worth trying again. */
  async #startOnce(timeoutMs: number): Promise<true | undefined> {
    const child = await spawnServer(`${this.#bin}/postgres`, [
      "-D",
      `${this.#dir}/data`,
      "-p",
      String(this.port),
      "-h",
      "127.0.0.1", // SPEC rules: loopback only
      "-k",
      this.#dir, // the unix socket stays inside the temp folder
      // fsync off: throwaway data, speed matters. A killed server still keeps every committed
      // transaction (it is in the OS cache), as a real crashed PostgreSQL would; so commits
      // stay synchronous, or a kill would also roll back what it already acknowledged.
      "-F",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=200",
      "-c",
      "logging_collector=off",
    ], { user: this.#options.user, cwd: this.#dir, stderr: "piped" });
    const running: Running = { child, stderr: new OutputTail(child.stderr!), exited: false };
    child.status.then(() => running.exited = true);
    this.#running = running;
    try {
      await pollUntil(`PostgreSQL on 127.0.0.1:${this.port}`, async () => {
        if (running.exited) throw new Error("postgres exited");
        return (await probePostgres(this.url, { timeoutMs: 1_000 })).ok ? true : undefined;
      }, { timeoutMs, signal: this.#options.signal });
      return true;
    } catch (error) {
      this.#running = undefined;
      await stopChild(child, "SIGKILL", STOP_GRACE_MS);
      await this.#reap(running);
      const log = running.stderr.text();
      const message = `PostgreSQL on 127.0.0.1:${this.port} did not start: ${
        error instanceof Error ? error.message : String(error)
      }\n${lastLines(log)}`;
      if (error instanceof DeadlineError || this.#options.signal?.aborted) {
        throw new Error(message, { cause: error });
      }
      if (/could not bind .*Address already in use/is.test(log)) throw new PortTakenError(message);
      if (STILL_HELD.test(log)) return undefined;
      throw new Error(message, { cause: error });
    }
  }

  async stop(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (!running) return;
    await stopChild(running.child, "SIGINT", STOP_GRACE_MS); // SIGINT: fast shutdown
    await this.#reap(running);
  }

  async kill(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (!running) return;
    await stopChild(running.child, "SIGKILL", STOP_GRACE_MS);
    await this.#reap(running);
  }

  /**
   * Waits until every process of the server has exited: they all hold its stderr pipe, so
   * the drain ends when the last one (an orphaned backend after a kill) is gone.
   */
  async #reap(running: Running): Promise<void> {
    try {
      await withDeadline(running.stderr.done, ORPHAN_WAIT_MS, "PostgreSQL's processes to exit");
    } catch {
      await running.stderr.cancel();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

function lastLines(text: string, count = 10): string {
  return text.trim().split("\n").slice(-count).join("\n");
}
