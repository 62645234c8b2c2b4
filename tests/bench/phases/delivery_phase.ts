/**
 * `delivery`: C users each start one run of E events as fast as the server can emit them
 * (`AGENT_STEP_DELAY_MS=0`), against the bare server pushing the same number of frames of the
 * same sizes: events/s, latency from the event's `ts` to receipt, and CPU per event of the
 * server and, with PostgreSQL and Redis, of their servers.
 *
 * The socketio phase drives agentsocket with the same workload through {@link deliveryEnv}
 * and {@link deliverTo}.
 *
 * @module
 */
import type { DeliveryResult, Target } from "../_load_protocol.ts";
import type { BenchServer } from "../_processes.ts";
import { runLoad } from "../_processes.ts";
import { atLeast, atMost, cpuPerOperation, cpuRows, fmt, pairRow } from "../_report.ts";
import type { CpuPerOperation, Row } from "../_report.ts";
import { medianOfRuns } from "../_stats.ts";
import { pairOrder, probesOf, raceCounters, startPair, stopPair } from "./_pair.ts";
import { BENCH_SECRET } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

/** Sizes of a delivery run. */
export interface DeliverySizes {
  readonly users: number;
  /** Events of one run (the demo agent's thinking steps + 4). */
  readonly eventsPerRun: number;
  /** Handshakes in flight while the users connect. */
  readonly concurrency: number;
  readonly runs: number;
}

/** The delivery workload's sizes (the socketio phase uses the same). */
export function deliverySizes(context: PhaseContext): DeliverySizes {
  const { mode, runs } = context.settings;
  return mode === "quick"
    ? { users: 20, eventsPerRun: 250, concurrency: 50, runs }
    : { users: 100, eventsPerRun: 1000, concurrency: 100, runs };
}

/** agentsocket's environment for the workload: no delay between steps, E events per run. */
export function deliveryEnv(
  env: Readonly<Record<string, string>>,
  sizes: DeliverySizes,
): Record<string, string> {
  return {
    ...env,
    AGENT_STEP_DELAY_MS: "0",
    AGENT_THINKING_STEPS: String(sizes.eventsPerRun - 4), // a run emits N + 4 events
  };
}

/** One delivery run against one server (agentsocket's `chat`, or the bare server's `push`). */
export async function deliverTo(
  context: PhaseContext,
  server: BenchServer,
  options: {
    readonly target: Target;
    /** User ids are this plus a number: a phase's own, so that phases sharing a database do
     * not share users. */
    readonly userPrefix: string;
    readonly firstUser: number;
    readonly users: number;
    readonly sizes: DeliverySizes;
    /** Bare only: the frame sizes to push (one agentsocket run's). */
    readonly frameSizes?: readonly number[];
  },
): Promise<DeliveryResult> {
  const timeoutMs = context.settings.timeoutMs;
  const result = await runLoad<DeliveryResult>({
    mode: "delivery",
    target: options.target,
    url: server.wsUrl,
    secret: BENCH_SECRET,
    userPrefix: options.userPrefix,
    firstUser: options.firstUser,
    count: options.users,
    timeoutMs: timeoutMs * 4,
    probes: probesOf(server, context),
    concurrency: options.sizes.concurrency,
    frameSizes: options.frameSizes,
  }, timeoutMs * 10);
  await server.waitIdle();
  return result;
}

/** A delivery run without its frame sizes (kept once per phase). */
export type DeliveryRun = Omit<DeliveryResult, "frameSizes">;

/** Drops the frame sizes of a run. */
export function withoutFrameSizes(run: DeliveryResult): DeliveryRun {
  const { frameSizes: _sizes, ...rest } = run;
  return rest;
}

/** The median of several delivery runs, with CPU per event (µs) of each measured process. */
export function medianDelivery(
  runs: readonly DeliveryRun[],
): DeliveryRun & { cpuPerEventUs: CpuPerOperation } {
  return {
    ...medianOfRuns(runs),
    cpuPerEventUs: medianOfRuns(runs.map((r) => cpuPerOperation(r.cpuMs, r.events, 1000))),
  };
}

/** One line for the log. */
export function describeDelivery(label: string, result: DeliveryRun): string {
  return `${label}: ${fmt(result.eventsPerSecond)} events/s, latency p50 ${
    fmt(result.latency.p50)
  } p99 ${fmt(result.latency.p99)} ms, ${result.events} events, ${result.failedUsers} failed; ` +
    `CPU µs/event ${
      Object.entries(result.cpuMs).map(([name, ms]) =>
        `${name} ${fmt((ms * 1000) / Math.max(1, result.events))}`
      ).join(" ")
    }`;
}

/** The mean, min and max of some frame sizes. */
export function frameBytesOf(sizes: readonly number[]) {
  const mean = sizes.reduce((s, n) => s + n, 0) / Math.max(1, sizes.length);
  return { min: Math.min(...sizes), max: Math.max(...sizes), mean };
}

/** What the delivery phase measured with one engine. */
export interface DeliveryPhaseResult {
  readonly sizes: DeliverySizes;
  readonly runs: Record<Target, DeliveryRun[]>;
  readonly median: Record<Target, DeliveryRun & { cpuPerEventUs: CpuPerOperation }>;
  readonly frameBytes: { readonly min: number; readonly max: number; readonly mean: number };
  readonly failuresTotal: Record<Target, number>;
  readonly raceViolations: number;
  readonly closes1011: number;
}

function rows(context: PhaseContext, p: DeliveryPhaseResult): Row[] {
  const services = context.engine!.name === "services";
  const section = `delivery, ${p.sizes.users} users × ${p.sizes.eventsPerRun} events (${
    context.engine!.label
  })`;
  const a = p.median.agentsocket;
  const b = p.median.bare;
  const rows: Row[] = [
    pairRow(section, "events/s", [a.eventsPerSecond, b.eventsPerSecond], {
      target: atLeast(services ? 0.5 : 0.7),
    }),
    pairRow(section, "latency p50 (ms, ts→receipt)", [a.latency.p50, b.latency.p50]),
    pairRow(section, "latency p99 (ms, ts→receipt)", [a.latency.p99, b.latency.p99]),
    ...cpuRows(section, [["agentsocket", a.cpuPerEventUs], ["bare", b.cpuPerEventUs]], {
      what: "event",
      unit: "µs",
      target: atMost(services ? 2 : 1.5),
      // One Redis primary then carries 250k events/s.
      redisAtMost: 4,
    }),
  ];
  rows.push(
    pairRow(section, "load generator CPU per run (ms)", [a.loadCpuMs, b.loadCpuMs]),
    {
      section,
      metric: "failed users (all runs)",
      cells: { agentsocket: p.failuresTotal.agentsocket, bare: p.failuresTotal.bare },
      target: "0",
      met: p.failuresTotal.agentsocket === 0,
    },
    {
      section,
      metric: "race violations / 1011 closes",
      cells: { agentsocket: p.raceViolations + p.closes1011 },
      target: "0",
      met: p.raceViolations + p.closes1011 === 0,
    },
  );
  return rows;
}

/** The delivery phase. */
export const deliveryPhase: Phase = {
  name: "delivery",
  summary: "C users × E events at full speed: events/s, latency, CPU per event",
  engines: ["memory", "services"],
  async run(context) {
    const engine = context.engine!;
    const sizes = deliverySizes(context);
    const servers = await startPair(
      context,
      deliveryEnv(engine.env, sizes),
      `delivery-${engine.tag}`,
    );
    try {
      const runs: Record<Target, DeliveryResult[]> = { agentsocket: [], bare: [] };
      let user = 0;
      let frameSizes: readonly number[] = [];
      const deliver = async (target: Target, users: number) => {
        const result = await deliverTo(context, servers[target], {
          target,
          userPrefix: `delivery-${engine.tag}-`,
          firstUser: user,
          users,
          sizes,
          frameSizes: target === "bare" ? frameSizes : undefined,
        });
        user += users;
        if (target === "agentsocket" && result.frameSizes.length > 0) {
          frameSizes = result.frameSizes;
        }
        return result;
      };
      // Warm-up, agentsocket first: its frame sizes are what the bare server pushes.
      for (const target of ["agentsocket", "bare"] as const) {
        await deliver(target, Math.min(10, sizes.users));
      }
      for (let r = 0; r < sizes.runs; r++) {
        for (const target of pairOrder(r)) {
          const result = await deliver(target, sizes.users);
          runs[target].push(result);
          context.note(describeDelivery(`delivery ${engine.tag} ${target} run ${r + 1}`, result));
        }
      }
      const kept = {
        agentsocket: runs.agentsocket.map(withoutFrameSizes),
        bare: runs.bare.map(withoutFrameSizes),
      };
      const result: DeliveryPhaseResult = {
        sizes,
        runs: kept,
        median: { agentsocket: medianDelivery(kept.agentsocket), bare: medianDelivery(kept.bare) },
        frameBytes: frameBytesOf(frameSizes),
        failuresTotal: {
          agentsocket: runs.agentsocket.reduce((s, r) => s + r.failedUsers, 0),
          bare: runs.bare.reduce((s, r) => s + r.failedUsers, 0),
        },
        ...await raceCounters(servers.agentsocket),
      };
      return { rows: rows(context, result), result };
    } finally {
      await stopPair(servers);
    }
  },
};
