/**
 * `scale`: the most concurrent ready connections one process (memory engine) holds with no
 * failure, stepping up to the process's file-descriptor limit (5,000 → 19,950 → 20,000), and
 * what happens past it (the bare server stops accepting; agentsocket listens again).
 *
 * @module
 */
import type { Target } from "../_load_protocol.ts";
import { BenchServer, Holders, sleep } from "../_processes.ts";
import type { Row } from "../_report.ts";
import { BENCH_SECRET } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

/** Sizes of the scale phase. */
export interface ScaleSizes {
  /** The connection counts stepped to. */
  readonly steps: readonly number[];
  readonly perProcess: number;
  readonly concurrency: number;
}

function sizesOf(context: PhaseContext): ScaleSizes {
  return context.settings.mode === "quick"
    ? { steps: [1500], perProcess: 1500, concurrency: 250 }
    : {
      // Past 19,900 the process nears its 20,000 descriptors: the last steps find the edge.
      steps: [5000, 10_000, 15_000, 19_000, 19_500, 19_900, 19_950, 20_000],
      perProcess: 5000,
      concurrency: 250,
    };
}

/** One step up. */
export interface ScaleStep {
  readonly target: number;
  readonly ready: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly rampMs: number;
  readonly serverRssKiB: number;
  readonly serverFds: number;
  readonly serverAlive: boolean;
}

/** How far one server went. */
export interface ScaleResult {
  readonly maxReadyWithoutFailure: number;
  /** Whether the server process was still running at the end, and its last lines if not. */
  readonly serverSurvived: boolean;
  readonly serverLastLines?: string;
  readonly steps: ScaleStep[];
  readonly dropped: number;
  readonly serverCpuMs: number;
  readonly loadCpuMs: number;
  readonly raceViolations: number;
  readonly closes1011: number;
}

async function scaleRun(context: PhaseContext, target: Target): Promise<ScaleResult> {
  const s = sizesOf(context);
  const timeoutMs = context.settings.timeoutMs;
  const env = { JWT_SECRET: BENCH_SECRET, AGENT_STEP_DELAY_MS: "0" };
  const server = await BenchServer.start(target, { env });
  const holders: Holders[] = [];
  const steps: ScaleStep[] = [];
  let level = 0;
  let clean = 0;
  let dropped = 0;
  let loadCpuMs = 0;
  const cpu0 = server.cpuMs();
  try {
    for (const stepTarget of s.steps) {
      const add = stepTarget - level;
      if (add <= 0) continue;
      const step = new Holders(
        {
          mode: "hold",
          target,
          url: server.wsUrl,
          secret: BENCH_SECRET,
          userPrefix: `scale-${target}-`,
          firstUser: level,
          count: add,
          timeoutMs,
          concurrency: s.concurrency,
        },
        s.perProcess,
        timeoutMs * 40,
      );
      holders.push(step);
      const report = await step.holding();
      level += report.ready;
      await sleep(500);
      steps.push({
        target: stepTarget,
        ready: level,
        failed: report.failed,
        failures: report.failures,
        rampMs: report.rampMs,
        serverRssKiB: server.rssKiB(),
        serverFds: server.openFds(),
        serverAlive: server.alive,
      });
      context.note(
        `scale ${target}: ${level} ready (target ${stepTarget}), ${report.failed} failed, ` +
          `server fds ${server.openFds()}`,
      );
      if (report.failed > 0 || !server.alive) break;
      clean = level;
    }
    const serverCpuMs = server.cpuMs() - cpu0;
    const raceViolations = await server.metric("agentsocket_race_violations_total");
    const closes1011 = await server.metric("agentsocket_connection_close_total", 'code="1011"');
    for (const step of holders.splice(0)) {
      for (const result of await step.release()) {
        dropped += result.dropped;
        loadCpuMs += result.loadCpuMs;
      }
    }
    const serverSurvived = server.alive;
    return {
      maxReadyWithoutFailure: clean,
      serverSurvived,
      serverLastLines: serverSurvived ? undefined : server.logs().slice(-2000),
      steps,
      dropped,
      serverCpuMs,
      loadCpuMs,
      raceViolations,
      closes1011,
    } satisfies ScaleResult;
  } finally {
    for (const step of holders) step.kill();
    await server.stop();
  }
}

function rows(result: ScalePhaseResult): Row[] {
  const section = "scale, one process (memory engine)";
  const { agentsocket: a, bare: b } = result.servers;
  const top = result.sizes.steps[result.sizes.steps.length - 1];
  return [{
    section,
    metric: "concurrent ready connections, no failure",
    cells: { agentsocket: a.maxReadyWithoutFailure, bare: b.maxReadyWithoutFailure },
    ratio: a.maxReadyWithoutFailure / b.maxReadyWithoutFailure,
    target: top >= 19_000 ? "≥ 19,000" : `(quick: ${top})`,
    met: top >= 19_000 ? a.maxReadyWithoutFailure >= 19_000 : undefined,
  }, {
    section,
    metric: `process still running after the last step (1 = yes; ${top} attempted)`,
    cells: { agentsocket: a.serverSurvived ? 1 : 0, bare: b.serverSurvived ? 1 : 0 },
  }, {
    section,
    metric: "connections dropped while held",
    cells: { agentsocket: a.dropped, bare: b.dropped },
  }];
}

/** What the scale phase measured. */
export interface ScalePhaseResult {
  readonly sizes: ScaleSizes;
  readonly servers: Record<Target, ScaleResult>;
}

/** The scale phase. */
export const scalePhase: Phase = {
  name: "scale",
  summary: "most ready connections one process holds with no failure (memory engine)",
  engines: [],
  async run(context) {
    // One server at a time: each takes the machine's descriptors to the limit.
    const result: ScalePhaseResult = {
      sizes: sizesOf(context),
      servers: {
        agentsocket: await scaleRun(context, "agentsocket"),
        bare: await scaleRun(context, "bare"),
      },
    };
    return { rows: rows(result), result };
  },
};
