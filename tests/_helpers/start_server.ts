/**
 * Starts agentsocket as a real process (`deno run main.ts`) on a free port, the way users run
 * it, and gives tests its URLs, logs, a dev token and its metrics.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import { RaceObserved } from "./race_observed.ts";
import type { ObservedRaceKind, RaceEvidence } from "./race_observed.ts";
import { freePort } from "./services.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Options of {@link startServer}. */
export interface StartServerOptions {
  /** Environment of the process (added to a quiet default). */
  readonly env?: Record<string, string>;
  /** Port to listen on (default: a free one). */
  readonly port?: number;
  /** Wait for `/health/ready` (default), `/health/live`, or nothing. */
  readonly waitFor?: "ready" | "live" | "none";
}

/** Options of {@link ServerProcess.metric}. */
export interface MetricOptions {
  /**
   * The value when no series matches: for a labelled counter that has not been incremented yet
   * (e.g. one close code). Without it a missing series throws, so a renamed or dropped metric
   * cannot read as zero.
   */
  readonly absent?: number;
}

/** How long a last `/metrics` read may take before a server is stopped. */
const SNAPSHOT_TIMEOUT_MS = 2_000;
/** How often a server that is shutting down has its `/metrics` read, until it exits. */
const SNAPSHOT_INTERVAL_MS = 100;

/**
 * A running server process. It knows whether it was meant to exit (it was stopped through
 * {@link ServerProcess.stop}) and keeps its last `/metrics` read, so a server that stopped can
 * still be checked for races up to its exit, and one that died unexpectedly fails the check.
 */
export class ServerProcess {
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  readonly env: Record<string, string>;
  #child: Deno.ChildProcess;
  #logs: string[] = [];
  #status: Promise<Deno.CommandStatus>;
  #exit?: Deno.CommandStatus;
  #stopRequested = false;
  #lastMetrics?: string;
  #pumps: Promise<void>[];

  constructor(port: number, env: Record<string, string>) {
    this.port = port;
    this.env = env;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys=hostname", MAIN],
      env: { ...env, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => this.#exit = status);
    this.#pumps = [this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)];
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Everything the process printed so far. */
  logs(): string {
    return this.#logs.join("");
  }

  /** Resolves with the exit status. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /** True once the process exited without having been stopped through {@link stop}. */
  get exitedUnexpectedly(): boolean {
    return this.#exit !== undefined && !this.#stopRequested;
  }

  /**
   * Sends a signal (default SIGTERM) and waits for the exit status. The server's `/metrics` is
   * read just before the signal and, while it shuts down, until it exits, so that
   * {@link assertNoRaces} can still vouch for it afterwards.
   */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (this.#exit === undefined && !this.#stopRequested) {
      this.#stopRequested = true;
      await this.#snapshot();
    }
    this.#stopRequested = true;
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
    if (signal !== "SIGKILL") {
      while (this.#exit === undefined && await this.#exitedWithin(SNAPSHOT_INTERVAL_MS) === false) {
        await this.#snapshot();
      }
    }
    const status = await this.#status;
    await Promise.all(this.#pumps);
    // E2E_LOG_DIR keeps every server's output for post-mortems of a failed run.
    const dir = Deno.env.get("E2E_LOG_DIR");
    if (dir) {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/server-${this.port}-${this.pid}.log`, this.logs());
    }
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }

  /** Polls a path until it answers `status`, within `timeoutMs`. */
  async waitFor(path: string, status = 200, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      if (this.#exit) {
        throw new AssertionError({
          message: `server exited (${this.#exit.code}):\n${this.logs()}`,
        });
      }
      try {
        const response = await fetch(this.url + path);
        last = `${response.status} ${await response.text()}`;
        if (response.status === status) return;
      } catch (error) {
        last = String(error);
      }
      await this.#exitedWithin(50);
    }
    throw new AssertionError({
      message: `${path} never answered ${status} (last: ${last})\n${this.logs()}`,
    });
  }

  /** A dev token for `userId`. */
  async devToken(userId: string): Promise<string> {
    const response = await fetch(`${this.url}/auth/dev-token`, {
      method: "POST",
      body: JSON.stringify({ userId }),
    });
    if (response.status !== 200) {
      throw new AssertionError({ message: `dev-token ${response.status}` });
    }
    return ((await response.json()) as { token: string }).token;
  }

  /** The `/metrics` text (kept as the last read, see {@link stop}). */
  async metrics(): Promise<string> {
    const response = await fetch(`${this.url}/metrics`);
    const text = await response.text();
    if (response.status !== 200) {
      throw new AssertionError({ message: `/metrics answered ${response.status}: ${text}` });
    }
    this.#lastMetrics = text;
    return text;
  }

  /**
   * The sum of a metric's series whose labels include `match` (e.g. `code="1011"`).
   *
   * @throws {AssertionError} When no series matches, unless `options.absent` is given.
   */
  async metric(name: string, match = "", options: MetricOptions = {}): Promise<number> {
    return sumOfSeries(await this.metrics(), name, match, options);
  }

  /**
   * Race violations by kind: from `/metrics` while the server runs; once it was stopped, from
   * its last `/metrics` read or its log up to its exit, whichever counted more.
   *
   * @throws {AssertionError} When the server exited unexpectedly, was never read, or the
   *   metric is missing.
   */
  async raceViolations(): Promise<Map<string, number>> {
    const counts = this.#violations(await this.#finalMetrics());
    return new Map([...counts].map(([kind, { count }]) => [kind, count]));
  }

  /**
   * Fails unless the detector counted no violation and no connection closed with 1011, up to
   * now or, for a server that was stopped, up to its exit. A counted violation throws
   * {@link RaceObserved} naming its kind; a server that exited without being stopped fails.
   */
  async assertNoRaces(): Promise<void> {
    const text = await this.#finalMetrics();
    const counted = [...this.#violations(text)].filter(([, n]) => n.count > 0);
    if (counted.length > 0) {
      const [kind, { evidence }] = counted[0];
      throw new RaceObserved(
        kind as ObservedRaceKind,
        evidence,
        `the server counted ${counted.map(([k, n]) => `${k}=${n.count}`).join(", ")}\n${
          this.logs().slice(-4000)
        }`,
      );
    }
    const internal = sumOfSeries(text, "agentsocket_connection_close_total", 'code="1011"', {});
    if (internal !== 0) {
      throw new AssertionError({
        message: `closes 1011: ${internal}\n${this.logs().slice(-4000)}`,
      });
    }
  }

  /**
   * Waits for `promise`, reading `/metrics` meanwhile, and fails as soon as the server counts
   * a race: for a wait whose end a race would prevent (a close that never comes), so that the
   * test fails on the race rather than on its own deadline.
   *
   * @throws {RaceObserved} As soon as a race violation is counted.
   */
  async unlessRace<T>(promise: Promise<T>): Promise<T> {
    let settled = false;
    const watched = promise.finally(() => settled = true);
    watched.catch(() => {}); // seen by the caller through `await watched`, or dropped after a race
    for (;;) {
      await this.assertNoRaces();
      if (settled || await settledWithin(watched, SNAPSHOT_INTERVAL_MS)) return await watched;
    }
  }

  /** The metrics text to judge the server by: read now, or the last read before it stopped. */
  async #finalMetrics(): Promise<string> {
    if (this.#exit === undefined) return await this.metrics();
    if (!this.#stopRequested) {
      throw new AssertionError({
        message: `the server exited unexpectedly (code ${this.#exit.code}, signal ${
          this.#exit.signal ?? "none"
        }):\n${this.logs().slice(-4000)}`,
      });
    }
    if (this.#lastMetrics === undefined) {
      throw new AssertionError({
        message: `the server stopped before any /metrics read: nothing vouches for it\n${
          this.logs().slice(-4000)
        }`,
      });
    }
    return this.#lastMetrics;
  }

  /**
   * Per kind, the count and where it was seen: `/metrics`, or, for a stopped server, its log
   * when that reported more (the log runs up to the exit, the last read does not).
   */
  #violations(text: string): Map<string, { count: number; evidence: RaceEvidence }> {
    const counts = new Map<string, { count: number; evidence: RaceEvidence }>();
    for (const [kind, count] of raceCounts(text)) counts.set(kind, { count, evidence: "metrics" });
    if (this.#exit !== undefined) {
      for (const [kind, count] of logViolations(this.logs())) {
        if (count > (counts.get(kind)?.count ?? 0)) counts.set(kind, { count, evidence: "log" });
      }
    }
    return counts;
  }

  /** Reads `/metrics` once more (bounded), keeping it as the last read; never throws. */
  async #snapshot(): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), SNAPSHOT_TIMEOUT_MS);
    try {
      const response = await fetch(`${this.url}/metrics`, { signal: abort.signal });
      const text = await response.text();
      if (response.status === 200) this.#lastMetrics = text;
    } catch {
      // not answering (any more): the last read stands, and the log covers the rest
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves true if the process exits within `ms`, false otherwise. */
  #exitedWithin(ms: number): Promise<boolean> {
    return settledWithin(this.#status, ms);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.#logs.push(decoder.decode(chunk, { stream: true }));
  }
}

/** Resolves true if `promise` settles within `ms`, false otherwise (never rejects). */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const elapsed = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), elapsed]);
  } finally {
    clearTimeout(timer);
  }
}

/** The sum of `name`'s series whose labels include `match`; see {@link ServerProcess.metric}. */
function sumOfSeries(text: string, name: string, match: string, options: MetricOptions): number {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const [series, value] = line.split(" ");
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    if (match && !series.includes(match)) continue;
    sum += Number(value);
    found = true;
  }
  if (found) return sum;
  if (options.absent !== undefined) return options.absent;
  throw new AssertionError({
    message: `/metrics has no series ${name}${match ? ` matching ${match}` : ""}`,
  });
}

const RACE_SERIES = /^agentsocket_race_violations_total\{kind="([a-z_]+)"\} (\S+)$/;

/** Race violations by kind, from the metrics text; throws when the metric is missing. */
function raceCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = RACE_SERIES.exec(line);
    if (match) counts.set(match[1], Number(match[2]));
  }
  if (counts.size === 0) {
    throw new AssertionError({ message: "/metrics has no agentsocket_race_violations_total" });
  }
  return counts;
}

/** Race violations by kind, from the server's JSON log lines (`"msg":"race violation"`). */
function logViolations(logs: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of logs.split("\n")) {
    if (!line.includes('"race violation"')) continue;
    try {
      const { msg, kind } = JSON.parse(line) as { msg?: unknown; kind?: unknown };
      if (msg === "race violation" && typeof kind === "string") {
        counts.set(kind, (counts.get(kind) ?? 0) + 1);
      }
    } catch {
      // not a log line of ours
    }
  }
  return counts;
}

/**
 * Starts a server process and waits until it answers.
 */
export async function startServer(options: StartServerOptions = {}): Promise<ServerProcess> {
  const port = options.port ?? freePort();
  const env = {
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: Deno.env.get("E2E_LOG_DIR") ? "info" : "warn",
    AGENT_STEP_DELAY_MS: "0",
    ...options.env,
  };
  const server = new ServerProcess(port, env);
  const waitFor = options.waitFor ?? "ready";
  try {
    if (waitFor === "ready") await server.waitFor("/health/ready");
    else if (waitFor === "live") await server.waitFor("/health/live");
  } catch (error) {
    await server.stop("SIGKILL");
    throw error;
  }
  return server;
}
