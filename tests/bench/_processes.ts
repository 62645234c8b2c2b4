/**
 * The processes a benchmark run starts: bench servers (agentsocket through
 * `agentsocket_server.ts`, `bare_server.ts`, or any other command such as the Socket.IO server
 * under Node) and load generators (`load_client.ts`, or another command speaking the same JSON
 * lines). Every one is registered in {@link CHILDREN} so that the orchestrator can stop them all,
 * even on failure or Ctrl-C.
 *
 * @module
 */
import type {
  BenchStats,
  HoldConfig,
  HoldReport,
  HoldResult,
  LoadConfig,
  LoadMessage,
  LoadResult,
  SocketIoDeliveryConfig,
  Target,
} from "./_load_protocol.ts";
import { BENCH_ROUTES, RELEASE } from "./_load_protocol.ts";
import { cpuMs, openFds, rssKiB } from "./_proc.ts";

const HERE = new URL(".", import.meta.url).pathname;
const SERVER_SCRIPTS: Record<Target, string> = {
  agentsocket: `${HERE}agentsocket_server.ts`,
  bare: `${HERE}bare_server.ts`,
};
const LOAD_SCRIPT = `${HERE}load_client.ts`;

/** Variables passed through to child processes; everything else is left out on purpose. */
const PASS_THROUGH = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "DENO_CERT"];

/** Every child process started and not yet reaped. */
export const CHILDREN = new Set<Deno.ChildProcess>();

/** Kills every child still running (SIGKILL) and waits for them, within `timeoutMs`. */
export async function killAllChildren(timeoutMs = 5_000): Promise<void> {
  const waits = [...CHILDREN].map((child) => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
    return child.status;
  });
  await within(Promise.all(waits), timeoutMs, undefined);
}

/** Resolves with the promise's value, or `fallback` after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise,
    new Promise<T>((resolve) => timer = setTimeout(() => resolve(fallback), ms)),
  ]);
  clearTimeout(timer);
  return result;
}

/** Waits `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of PASS_THROUGH) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** A program and its arguments. */
export interface CommandLine {
  readonly program: string;
  readonly args: readonly string[];
}

function spawn(command: CommandLine, env: Record<string, string>, stdin: "piped" | "null") {
  const child = new Deno.Command(command.program, {
    args: [...command.args],
    env: { ...baseEnv(), ...env },
    clearEnv: true,
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  CHILDREN.add(child);
  child.status.finally(() => CHILDREN.delete(child));
  return child;
}

/** Keeps the last `limit` lines of a stream, for diagnostics. */
async function tail(stream: ReadableStream<Uint8Array>, into: string[], limit = 200) {
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      into.push(...chunk.split("\n").filter((line) => line.length > 0));
      if (into.length > limit) into.splice(0, into.length - limit);
    }
  } catch {
    // the process was killed
  }
}

/** Options of {@link BenchServer.start}. */
export interface BenchServerOptions {
  /** Added to the server's environment (`HOST` and `PORT` are set here). */
  readonly env?: Record<string, string>;
  /** Run with `--v8-flags=--expose-gc`, so `/__bench/gc` collects. */
  readonly exposeGc?: boolean;
  /** Write a V8 CPU profile here on exit (`--cpu-prof`). */
  readonly cpuProfile?: { dir: string; name: string };
}

/**
 * Options of {@link BenchServer.spawn}: a server that is not one of the Deno bench servers.
 * It must listen on `PORT` (given in its environment) on 127.0.0.1 and answer
 * `/health/ready` (200 once it serves) and `/__bench/stats` (a JSON object with at least
 * `connections`).
 */
export interface SpawnServerOptions {
  readonly command: CommandLine;
  readonly env?: Record<string, string>;
}

/** A bench server process on 127.0.0.1. */
export class BenchServer {
  /** `agentsocket`, `bare`, or the name given to {@link BenchServer.spawn}. */
  readonly target: string;
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  #child: Deno.ChildProcess;
  #logs: string[] = [];
  #pumps: Promise<void>[];
  #exited = false;

  private constructor(target: string, port: number, child: Deno.ChildProcess) {
    this.target = target;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
    this.#child = child;
    child.status.then(() => this.#exited = true);
    this.#pumps = [tail(child.stdout, this.#logs), tail(child.stderr, this.#logs)];
  }

  /** Starts a Deno bench server and waits until `/health/ready` answers 200 (within 30 s). */
  static async start(target: Target, options: BenchServerOptions = {}): Promise<BenchServer> {
    const args = ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys=hostname"];
    if (options.exposeGc) args.push("--v8-flags=--expose-gc");
    if (options.cpuProfile) {
      args.push(
        "--cpu-prof",
        `--cpu-prof-dir=${options.cpuProfile.dir}`,
        `--cpu-prof-name=${options.cpuProfile.name}`,
      );
    }
    args.push(SERVER_SCRIPTS[target]);
    return await BenchServer.spawn(target, {
      command: { program: Deno.execPath(), args },
      env: { LOG_LEVEL: "warn", ...options.env },
    });
  }

  /** Starts any server command on a free port and waits until it is ready (within 30 s). */
  static async spawn(target: string, options: SpawnServerOptions): Promise<BenchServer> {
    const port = freePort();
    const env = { ...options.env, HOST: "127.0.0.1", PORT: String(port) };
    const server = new BenchServer(target, port, spawn(options.command, env, "null"));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (server.#exited) break;
      try {
        const response = await fetch(`${server.url}/health/ready`);
        await response.body?.cancel();
        if (response.status === 200) return server;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    await server.stop();
    throw new Error(`${target} server did not become ready:\n${server.logs()}`);
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Whether the process is still running. */
  get alive(): boolean {
    return !this.#exited;
  }

  /** The last lines the process printed. */
  logs(): string {
    return this.#logs.join("\n");
  }

  /** CPU time used so far, ms. */
  cpuMs(): number {
    return cpuMs(this.pid);
  }

  /** Resident memory now, KiB. */
  rssKiB(): number {
    return rssKiB(this.pid);
  }

  /** Open file descriptors now. */
  openFds(): number {
    return openFds(this.pid);
  }

  /** The server's own view; `collect` forces a full GC first. */
  async stats(collect: boolean): Promise<BenchStats> {
    const response = await fetch(this.url + (collect ? BENCH_ROUTES.gc : BENCH_ROUTES.stats));
    return await response.json() as BenchStats;
  }

  /**
   * A memory snapshot after a forced GC: the server's figures plus `/proc` RSS read after
   * the collection settles.
   */
  async snapshot(): Promise<MemorySnapshot> {
    const stats = await this.stats(true);
    if (!stats.gc) throw new Error("the server was not started with --expose-gc");
    await sleep(300);
    return {
      rssKiB: this.rssKiB(),
      heapUsed: stats.memory.heapUsed,
      heapTotal: stats.memory.heapTotal,
      newSpace: stats.spaces.new_space?.size ?? 0,
      external: stats.memory.external,
      connections: stats.connections,
      engineUsers: stats.engineUsers,
    };
  }

  /** Waits until the server holds no connection (bounded); returns whether it got there. */
  async waitIdle(timeoutMs = 30_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.stats(false)).connections === 0) return true;
      await sleep(100);
    }
    return false;
  }

  /**
   * The sum of a `/metrics` series whose labels include `match` (agentsocket only; 0 for the
   * bare server).
   */
  async metric(name: string, match = ""): Promise<number> {
    if (this.target !== "agentsocket") return 0;
    if (!this.alive) return NaN;
    let text: string;
    try {
      text = await (await fetch(`${this.url}/metrics`)).text();
    } catch {
      return NaN; // it died meanwhile
    }
    let sum = 0;
    for (const line of text.split("\n")) {
      const [series, value] = line.split(" ");
      if (series !== name && !series.startsWith(`${name}{`)) continue;
      if (match && !series.includes(match)) continue;
      sum += Number(value);
    }
    return sum;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
  async stop(graceMs = 10_000): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    if (!await within(this.#child.status.then(() => true), graceMs, false)) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
      await this.#child.status;
    }
    await within(Promise.all(this.#pumps), 2_000, undefined);
  }
}

/** Memory of a server after a forced GC. */
export interface MemorySnapshot {
  readonly rssKiB: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  /** Committed bytes of V8's young generation (grows with the allocation rate, not with what is held). */
  readonly newSpace: number;
  readonly external: number;
  readonly connections: number;
  readonly engineUsers?: number;
}

/** One load generator process. */
export class LoadProcess {
  readonly config: LoadConfig | SocketIoDeliveryConfig;
  #child: Deno.ChildProcess;
  #messages: LoadMessage[] = [];
  #wake?: () => void;
  #stderr: string[] = [];
  #done: Promise<void>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  /**
   * Starts a load process; it gives up (SIGKILL) after `killAfterMs`.
   *
   * @param command Another load generator speaking the same JSON lines (the configuration is
   *   appended as its last argument); `load_client.ts` under Deno by default.
   */
  constructor(
    config: LoadConfig | SocketIoDeliveryConfig,
    killAfterMs: number,
    command?: CommandLine,
  ) {
    this.config = config;
    // -A: Deno grants reads under /proc (CPU times) only with --allow-all.
    const program = command ?? { program: Deno.execPath(), args: ["run", "-A", LOAD_SCRIPT] };
    this.#child = spawn(
      { program: program.program, args: [...program.args, JSON.stringify(config)] },
      {},
      "piped",
    );
    this.#writer = this.#child.stdin.getWriter();
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, killAfterMs);
    this.#child.status.finally(() => clearTimeout(timer));
    this.#done = Promise.all([this.#readLines(), tail(this.#child.stderr, this.#stderr)]).then(
      () => {},
    );
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  async #readLines(): Promise<void> {
    let buffered = "";
    try {
      for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let newline;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line.startsWith("{")) this.#messages.push(JSON.parse(line) as LoadMessage);
          this.#wake?.();
        }
      }
    } finally {
      this.#wake?.();
    }
  }

  /** The next message of `type` (an `error` message, or the process ending, throws). */
  async next<T extends LoadMessage["type"]>(
    type: T,
  ): Promise<Extract<LoadMessage, { type: T }>> {
    for (;;) {
      const index = this.#messages.findIndex((m) => m.type === type || m.type === "error");
      if (index >= 0) {
        const [message] = this.#messages.splice(index, 1);
        if (message.type === "error") throw new Error(`load process failed: ${message.message}`);
        return message as Extract<LoadMessage, { type: T }>;
      }
      const ended = await Promise.race([
        this.#done.then(() => true),
        new Promise<false>((resolve) => this.#wake = () => resolve(false)),
      ]);
      this.#wake = undefined;
      if (ended && !this.#messages.some((m) => m.type === type || m.type === "error")) {
        throw new Error(
          `load process ended without a ${type} (${(await this.#child.status).code}):\n` +
            this.#stderr.join("\n"),
        );
      }
    }
  }

  /** Tells a hold to close its connections. */
  async release(): Promise<void> {
    try {
      await this.#writer.write(new TextEncoder().encode(`${RELEASE}\n`));
    } catch {
      // the process is gone; next() reports it
    }
  }

  /** Waits for the result, then for the process to exit. */
  async result(): Promise<LoadResult> {
    const { result } = await this.next("result");
    try {
      await this.#writer.close();
    } catch {
      // already closed
    }
    await this.#child.status;
    return result;
  }

  /** Kills the process (when the run is being abandoned). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // exited
    }
  }
}

/** Runs one load process to its result (`command`: see {@link LoadProcess}). */
export async function runLoad<T extends LoadResult>(
  config: LoadConfig | SocketIoDeliveryConfig,
  killAfterMs: number,
  command?: CommandLine,
): Promise<T> {
  const load = new LoadProcess(config, killAfterMs, command);
  try {
    return await load.result() as T;
  } finally {
    load.kill();
  }
}

/** Several load processes that open connections and hold them until released. */
export class Holders {
  #loads: LoadProcess[];

  /**
   * Splits `count` connections over processes of at most `perProcess` each.
   *
   * @param config The hold configuration (its `count` and `firstUser` are split).
   */
  constructor(config: HoldConfig, perProcess: number, killAfterMs: number) {
    this.#loads = [];
    for (let offset = 0; offset < config.count; offset += perProcess) {
      this.#loads.push(
        new LoadProcess({
          ...config,
          firstUser: config.firstUser + offset,
          count: Math.min(perProcess, config.count - offset),
        }, killAfterMs),
      );
    }
  }

  /** The load processes' ids. */
  get pids(): number[] {
    return this.#loads.map((load) => load.pid);
  }

  /** Waits until every process holds its connections; sums their reports. */
  async holding(): Promise<HoldReport> {
    const reports = await Promise.all(
      this.#loads.map(async (load) => (await load.next("holding")).report),
    );
    const failures: Record<string, number> = {};
    for (const report of reports) {
      for (const [reason, n] of Object.entries(report.failures)) {
        failures[reason] = (failures[reason] ?? 0) + n;
      }
    }
    return {
      ready: reports.reduce((sum, r) => sum + r.ready, 0),
      failed: reports.reduce((sum, r) => sum + r.failed, 0),
      failures,
      rampMs: Math.max(...reports.map((r) => r.rampMs)),
    };
  }

  /** Releases every process and collects their results. */
  async release(): Promise<HoldResult[]> {
    await Promise.all(this.#loads.map((load) => load.release()));
    return await Promise.all(this.#loads.map(async (load) => await load.result() as HoldResult));
  }

  /** Kills every process. */
  kill(): void {
    for (const load of this.#loads) load.kill();
  }
}
