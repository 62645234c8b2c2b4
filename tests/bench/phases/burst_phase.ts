/**
 * `burst`: N connections opened at once, each with its own user's `hello`: open → `ready`
 * (agentsocket) against open → first echo (bare), and the CPU per handshake of the server and,
 * with PostgreSQL and Redis, of their servers. A failed or timed-out handshake counts in the
 * percentiles as the time limit (30 s).
 *
 * @module
 */
import type { BurstResult, Target } from "../_load_protocol.ts";
import { runLoad } from "../_processes.ts";
import { atMost, cpuPerOperation, cpuRows, fmt, pairRow } from "../_report.ts";
import type { CpuPerOperation, Row } from "../_report.ts";
import { medianOfRuns } from "../_stats.ts";
import { pairOrder, probesOf, raceCounters, startPair, stopPair } from "./_pair.ts";
import type { Pair } from "./_pair.ts";
import { BENCH_SECRET } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

/** Sizes of a burst run. */
export interface BurstSizes {
  readonly connections: number;
  readonly warmup: number;
  /** A burst takes a second or two and is the noisiest figure: it repeats twice as often. */
  readonly runs: number;
}

function sizesOf(context: PhaseContext): BurstSizes {
  const { mode, runs } = context.settings;
  return mode === "quick"
    ? { connections: 200, warmup: 100, runs }
    : { connections: 1000, warmup: 300, runs: runs * 2 };
}

/** What the burst phase measured with one engine. */
export interface BurstPhaseResult {
  readonly sizes: BurstSizes;
  readonly runs: Record<Target, BurstResult[]>;
  readonly median: Record<Target, BurstResult & { cpuPerHandshakeMs: CpuPerOperation }>;
  readonly failuresTotal: Record<Target, number>;
  readonly raceViolations: number;
  readonly closes1011: number;
}

async function measure(context: PhaseContext, servers: Pair): Promise<BurstPhaseResult> {
  const engine = context.engine!;
  const sizes = sizesOf(context);
  const timeoutMs = context.settings.timeoutMs;
  const runs: Record<Target, BurstResult[]> = { agentsocket: [], bare: [] };
  let user = 0;
  const burst = async (target: Target, count: number) => {
    const server = servers[target];
    const result = await runLoad<BurstResult>({
      mode: "burst",
      target,
      url: server.wsUrl,
      secret: BENCH_SECRET,
      userPrefix: `burst-${engine.tag}-`,
      firstUser: user,
      count,
      timeoutMs,
      probes: probesOf(server, context),
    }, timeoutMs * 4);
    user += count;
    await server.waitIdle();
    return result;
  };
  for (const target of ["agentsocket", "bare"] as const) await burst(target, sizes.warmup);
  for (let r = 0; r < sizes.runs; r++) {
    for (const target of pairOrder(r)) {
      const result = await burst(target, sizes.connections);
      runs[target].push(result);
      context.note(
        `burst ${engine.tag} ${target} run ${r + 1}: open→ready p50 ${
          fmt(result.openToReady.p50)
        } p99 ${fmt(result.openToReady.p99)} ms, ${result.failed} failed, CPU ${
          Object.entries(result.cpuMs).map(([name, ms]) => `${name} ${fmt(ms)}`).join(" ")
        } ms`,
      );
    }
  }
  const med = (target: Target) => ({
    ...medianOfRuns(runs[target]),
    cpuPerHandshakeMs: medianOfRuns(
      runs[target].map((r) => cpuPerOperation(r.cpuMs, r.ok, 1)),
    ),
  });
  return {
    sizes,
    runs,
    median: { agentsocket: med("agentsocket"), bare: med("bare") },
    failuresTotal: {
      agentsocket: runs.agentsocket.reduce((s, r) => s + r.failed, 0),
      bare: runs.bare.reduce((s, r) => s + r.failed, 0),
    },
    ...await raceCounters(servers.agentsocket),
  };
}

function rows(context: PhaseContext, p: BurstPhaseResult): Row[] {
  const services = context.engine!.name === "services";
  const section = `handshake burst, ${p.sizes.connections} at once (${context.engine!.label})`;
  const a = p.median.agentsocket;
  const b = p.median.bare;
  return [
    pairRow(section, "open→ready p50 (ms)", [a.openToReady.p50, b.openToReady.p50]),
    pairRow(section, "open→ready p99 (ms)", [a.openToReady.p99, b.openToReady.p99], {
      target: atMost(services ? 2 : 1.25),
    }),
    pairRow(section, "open→ready max (ms)", [a.openToReady.max, b.openToReady.max]),
    pairRow(section, "connect→ready p99 (ms)", [a.connectToReady.p99, b.connectToReady.p99]),
    pairRow(section, "connections/s", [a.connectionsPerSecond, b.connectionsPerSecond]),
    ...cpuRows(section, [["agentsocket", a.cpuPerHandshakeMs], ["bare", b.cpuPerHandshakeMs]], {
      what: "handshake",
      unit: "ms",
      target: atMost(2),
    }),
    pairRow(section, "load generator CPU per burst (ms)", [a.loadCpuMs, b.loadCpuMs]),
    {
      section,
      metric: "failed handshakes (all runs; each counts as 30 s above)",
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
  ];
}

/** The burst phase. */
export const burstPhase: Phase = {
  name: "burst",
  summary: "N connections at once: open→ready (p50/p99/max) and CPU per handshake",
  engines: ["memory", "services"],
  async run(context) {
    const engine = context.engine!;
    const servers = await startPair(context, engine.env, `burst-${engine.tag}`);
    try {
      const result = await measure(context, servers);
      return { rows: rows(context, result), result };
    } finally {
      await stopPair(servers);
    }
  },
};
