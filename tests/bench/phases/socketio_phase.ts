/**
 * `socketio`: agentsocket with PostgreSQL and Redis against Socket.IO 4.8 with Redis, on the
 * delivery workload (C users × E events, frames of the same sizes), so that anyone can repeat the
 * comparison: events/s, latency p50/p99, and CPU per event of the server process, the Redis
 * server and the PostgreSQL server.
 *
 * The Socket.IO side is `../socketio/`: a server (`socketio_server.mjs`, JWT checked in its
 * middleware with jose, the Redis Streams adapter with connection-state recovery, or the Redis
 * pub/sub adapter) and a load generator (`socketio_load_client.mjs`, socket.io-client), both run
 * by Node from the versions pinned in `../socketio/package-lock.json` (installed here with
 * `npm ci` when missing). `--socketio-runtime=deno` runs the same server under Deno's Node
 * compatibility instead (its clients stay on Node).
 *
 * agentsocket and each Socket.IO setup run in turn, the order rotated per repeat, against the
 * same Redis server, with the same probes.
 *
 * @module
 */
import type { CpuProbe, DeliveryResult, SocketIoDeliveryConfig } from "../_load_protocol.ts";
import { BenchServer, runLoad } from "../_processes.ts";
import type { CommandLine } from "../_processes.ts";
import { atLeast, atMost, cpuRows, fmt } from "../_report.ts";
import type { Row } from "../_report.ts";
import { listFlag } from "../_settings.ts";
import { rotation } from "../_stats.ts";
import { cpuProfileOf, raceCounters } from "./_pair.ts";
import {
  deliverTo,
  deliveryEnv,
  deliverySizes,
  describeDelivery,
  frameBytesOf,
  medianDelivery,
  withoutFrameSizes,
} from "./delivery_phase.ts";
import type { DeliveryRun, DeliverySizes } from "./delivery_phase.ts";
import { BENCH_SECRET, PhaseSkipped } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

const SOCKETIO_DIR = new URL("../socketio/", import.meta.url).pathname;
const SERVER_SCRIPT = `${SOCKETIO_DIR}socketio_server.mjs`;
const CLIENT_SCRIPT = `${SOCKETIO_DIR}socketio_load_client.mjs`;

/** The Socket.IO Redis adapters the phase can measure. */
export const SOCKETIO_ADAPTERS = ["streams", "pubsub"] as const;
type Adapter = typeof SOCKETIO_ADAPTERS[number];

/** Column names, as the README's table says them. */
const COLUMN: Record<"agentsocket" | Adapter, string> = {
  agentsocket: "agentsocket",
  streams: "Socket.IO + Streams",
  pubsub: "Socket.IO + pub/sub",
};

const LABEL: Record<"agentsocket" | Adapter, string> = {
  agentsocket: "agentsocket, PostgreSQL + Redis",
  streams: "Socket.IO + Redis Streams adapter (with recovery)",
  pubsub: "Socket.IO + Redis pub/sub adapter (no recovery)",
};

async function output(command: CommandLine, cwd?: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command(command.program, {
    args: [...command.args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

/** Node's version, or a PhaseSkipped when there is no `node`. */
async function nodeVersion(): Promise<string> {
  try {
    const result = await output({ program: "node", args: ["--version"] });
    if (result.success) return new TextDecoder().decode(result.stdout).trim();
  } catch {
    // not installed
  }
  throw new PhaseSkipped("Node.js (`node`) is not installed: the Socket.IO side runs on it");
}

function mtime(path: string): number {
  try {
    return Deno.statSync(path).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** `npm ci` in `../socketio/` when its node_modules is missing or older than the lockfile. */
async function installPackages(context: PhaseContext): Promise<void> {
  const installed = mtime(`${SOCKETIO_DIR}node_modules/.package-lock.json`);
  if (installed > 0 && installed >= mtime(`${SOCKETIO_DIR}package-lock.json`)) return;
  context.note("socketio: npm ci in tests/bench/socketio/");
  let result: Deno.CommandOutput;
  try {
    result = await output(
      { program: "npm", args: ["ci", "--no-audit", "--no-fund", "--ignore-scripts"] },
      SOCKETIO_DIR,
    );
  } catch (error) {
    throw new PhaseSkipped(`npm could not be run: ${(error as Error).message}`);
  }
  if (!result.success) {
    throw new PhaseSkipped(
      `npm ci failed in tests/bench/socketio/:\n${new TextDecoder().decode(result.stderr)}`,
    );
  }
}

async function startSocketIo(
  context: PhaseContext,
  adapter: Adapter,
  frameSizes: readonly number[],
): Promise<BenchServer> {
  const engine = context.engine!;
  const runtime = context.settings.flags["socketio-runtime"];
  const command: CommandLine = runtime === "deno"
    ? { program: Deno.execPath(), args: ["run", "-A", SERVER_SCRIPT] }
    : { program: "node", args: [SERVER_SCRIPT] };
  return await BenchServer.spawn(`socketio-${adapter}`, {
    command,
    env: {
      NODE_ENV: "production",
      REDIS_URL: engine.redis!.url,
      JWT_SECRET: BENCH_SECRET,
      SIO_ADAPTER: adapter,
      SIO_KEY_PREFIX: `${engine.redis!.prefix}:sio-${adapter}`,
      EVENT_SIZES: JSON.stringify(frameSizes),
    },
  });
}

async function deliverToSocketIo(
  context: PhaseContext,
  server: BenchServer,
  options: { readonly firstUser: number; readonly users: number; readonly sizes: DeliverySizes },
): Promise<DeliveryResult> {
  const timeoutMs = context.settings.timeoutMs;
  const probes: CpuProbe[] = [
    { name: "server", pid: server.pid, tree: false },
    ...context.engine!.probes,
  ];
  const config: SocketIoDeliveryConfig = {
    mode: "delivery",
    url: server.url,
    secret: BENCH_SECRET,
    userPrefix: `socketio-${context.engine!.tag}-`,
    firstUser: options.firstUser,
    count: options.users,
    timeoutMs: timeoutMs * 4,
    concurrency: options.sizes.concurrency,
    probes,
  };
  const result = await runLoad<DeliveryResult>(config, timeoutMs * 10, {
    program: "node",
    args: [CLIENT_SCRIPT],
  });
  await server.waitIdle();
  return result;
}

type Setup = "agentsocket" | Adapter;

/** What the socketio phase measured. */
export interface SocketIoPhaseResult {
  readonly sizes: DeliverySizes;
  readonly node: string;
  readonly socketIoRuntime: string;
  readonly setups: readonly Setup[];
  readonly runs: Partial<Record<Setup, DeliveryRun[]>>;
  readonly median: Partial<Record<Setup, ReturnType<typeof medianDelivery>>>;
  /** Frame sizes (text frames, bytes) one user received, per setup. */
  readonly frameBytes: Partial<
    Record<Setup, { readonly min: number; readonly max: number; readonly mean: number }>
  >;
  readonly failuresTotal: Partial<Record<Setup, number>>;
  readonly raceViolations: number;
  readonly closes1011: number;
}

function rows(p: SocketIoPhaseResult): Row[] {
  const section =
    `Socket.IO comparison: delivery, ${p.sizes.users} users × ${p.sizes.eventsPerRun} ` +
    `events, one server process and Redis (ratio: agentsocket / ${COLUMN[p.setups[1]]})`;
  const cells = (value: (setup: Setup) => number | undefined) =>
    Object.fromEntries(p.setups.map((setup) => [COLUMN[setup], value(setup)]));
  const row = (
    metric: string,
    value: (setup: Setup) => number | undefined,
    target?: { text: string; test(ratio: number): boolean },
  ): Row => {
    const a = value(p.setups[0]);
    const b = value(p.setups[1]);
    const ratio = a !== undefined && b !== undefined ? a / b : undefined;
    return {
      section,
      metric,
      cells: cells(value),
      ratio,
      target: target?.text,
      met: target && ratio !== undefined ? target.test(ratio) : undefined,
    };
  };
  const m = (setup: Setup) => p.median[setup]!;
  return [
    row("events/s", (s) => m(s).eventsPerSecond, atLeast(1)),
    row("latency p50 (ms, ts→receipt)", (s) => m(s).latency.p50),
    row("latency p99 (ms, ts→receipt)", (s) => m(s).latency.p99),
    ...cpuRows(section, p.setups.map((s) => [COLUMN[s], m(s).cpuPerEventUs] as const), {
      what: "event",
      unit: "µs",
      target: atMost(1),
    }),
    row("load generator CPU per event (µs)", (s) => (m(s).loadCpuMs * 1000) / m(s).events),
    row("frame bytes per event (mean)", (s) => p.frameBytes[s]?.mean),
    {
      section,
      metric: "failed users (all runs)",
      cells: cells((s) => p.failuresTotal[s]),
      target: "0",
      met: Object.values(p.failuresTotal).every((n) => n === 0),
    },
  ];
}

/** The issue-style table for the README: one line per setup. */
function markdown(p: SocketIoPhaseResult): string {
  const lines = [
    "| server | events/s | server CPU µs/event | Redis CPU µs/event | PostgreSQL CPU µs/event | latency p50 |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const setup of p.setups) {
    const m = p.median[setup]!;
    const cpu = m.cpuPerEventUs;
    lines.push(
      `| ${LABEL[setup]} | ${fmt(Math.round(m.eventsPerSecond / 100) * 100)} | ${
        fmt(cpu.server, 1)
      } | ${fmt(cpu.redis, 1)} | ${setup === "agentsocket" ? fmt(cpu.postgres, 1) : "—"} | ${
        fmt(m.latency.p50)
      } ms |`,
    );
  }
  return lines.join("\n");
}

/** The socketio phase. */
export const socketioPhase: Phase = {
  name: "socketio",
  summary: "the delivery workload: agentsocket (PostgreSQL + Redis) against Socket.IO 4.8 + Redis",
  engines: ["services"],
  flags: {
    "socketio-runtime": {
      type: "string",
      description: "what runs the Socket.IO server (its clients always run on Node)",
      choices: ["node", "deno"],
      default: "node",
    },
    "socketio-adapters": {
      type: "string",
      description: "Socket.IO's Redis adapters to measure",
      choices: SOCKETIO_ADAPTERS,
      list: true,
      default: "streams,pubsub",
    },
  },
  async run(context) {
    const engine = context.engine!;
    if (!engine.redis) throw new PhaseSkipped("Redis is not set up");
    const node = await nodeVersion();
    await installPackages(context);
    const sizes = deliverySizes(context);
    const adapters = listFlag(context.settings, "socketio-adapters") as Adapter[];
    const setups: Setup[] = ["agentsocket", ...adapters];
    const servers = new Map<Setup, BenchServer>();
    try {
      const agentsocket = await BenchServer.start("agentsocket", {
        env: deliveryEnv(engine.env, sizes),
        cpuProfile: cpuProfileOf(context, `socketio-agentsocket-${engine.tag}`),
      });
      servers.set("agentsocket", agentsocket);
      let user = 0;
      const deliver = async (setup: Setup, users: number) => {
        const server = servers.get(setup)!;
        const options = { firstUser: user, users, sizes };
        user += users;
        return setup === "agentsocket"
          ? await deliverTo(context, server, {
            ...options,
            target: "agentsocket",
            userPrefix: `socketio-agentsocket-${context.engine!.tag}-`,
          })
          : await deliverToSocketIo(context, server, options);
      };
      // Warm-up, agentsocket first: its frame sizes are what the Socket.IO server sends.
      const warm = await deliver("agentsocket", Math.min(10, sizes.users));
      const frameSizes = warm.frameSizes;
      if (frameSizes.length < 2) throw new Error("agentsocket's warm-up run sent no events");
      const frames: SocketIoPhaseResult["frameBytes"] = { agentsocket: frameBytesOf(frameSizes) };
      for (const adapter of adapters) {
        servers.set(adapter, await startSocketIo(context, adapter, frameSizes));
        const result = await deliver(adapter, Math.min(10, sizes.users));
        if (result.frameSizes.length > 0) frames[adapter] = frameBytesOf(result.frameSizes);
      }
      const runs: Partial<Record<Setup, DeliveryRun[]>> = {};
      for (let r = 0; r < sizes.runs; r++) {
        for (const setup of rotation(setups, r)) {
          const result = await deliver(setup, sizes.users);
          (runs[setup] ??= []).push(withoutFrameSizes(result));
          context.note(describeDelivery(`socketio ${setup} run ${r + 1}`, result));
        }
      }
      const result: SocketIoPhaseResult = {
        sizes,
        node,
        socketIoRuntime: String(context.settings.flags["socketio-runtime"]),
        setups,
        runs,
        median: Object.fromEntries(setups.map((s) => [s, medianDelivery(runs[s]!)])),
        frameBytes: frames,
        failuresTotal: Object.fromEntries(
          setups.map((s) => [s, runs[s]!.reduce((sum, r) => sum + r.failedUsers, 0)]),
        ),
        ...await raceCounters(agentsocket),
      };
      return { rows: rows(result), result, markdown: markdown(result) };
    } finally {
      await Promise.all([...servers.values()].map((server) => server.stop()));
    }
  },
};
