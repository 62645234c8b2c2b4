/**
 * `memory`: RSS and JS heap per idle connection (`ready` for agentsocket, open and echoed for
 * bare) at N connections, each measured against a baseline after a last-resort major GC
 * (`/__bench/gc`, `--expose-gc`), which compacts the heap and gives free pages back, so it shows
 * what is held rather than how far the heap grew while the connections were opened. Then, on
 * agentsocket's first run, users connect, chat and leave (churn), and memory is read again after
 * the memory engine's idle sweep, which shows that per-user state is swept.
 *
 * @module
 */
import type { ChurnResult, HoldReport, HoldResult, Target } from "../_load_protocol.ts";
import { BenchServer, Holders, runLoad, sleep } from "../_processes.ts";
import type { MemorySnapshot } from "../_processes.ts";
import { fmt } from "../_report.ts";
import type { Row } from "../_report.ts";
import { median } from "../_stats.ts";
import { pairOrder } from "./_pair.ts";
import { BENCH_SECRET } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

/** Sizes of a memory run. */
export interface MemorySizes {
  readonly connections: number;
  readonly runs: number;
  /** Connections per load process. */
  readonly perProcess: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly churnUsers: number;
  readonly churnConcurrency: number;
  /** Wait for the memory engine's idle sweep after churn (EVENT_RETENTION_SECONDS × 2 + 1 s). */
  readonly waitForSweep: boolean;
  readonly retentionSeconds: number;
}

function sizesOf(context: PhaseContext): MemorySizes {
  return context.settings.mode === "quick"
    ? {
      connections: 1000,
      runs: 1,
      perProcess: 1000,
      concurrency: 200,
      warmup: 200,
      churnUsers: 200,
      churnConcurrency: 50,
      waitForSweep: false, // two 21 s waits: full mode only
      retentionSeconds: 10,
    }
    : {
      connections: 10_000,
      runs: 3,
      perProcess: 5000,
      concurrency: 250,
      warmup: 500,
      churnUsers: 5000,
      churnConcurrency: 100,
      waitForSweep: true,
      retentionSeconds: 10,
    };
}

/** One memory run of one server. */
export interface MemoryRun {
  readonly ready: number;
  readonly failed: number;
  readonly dropped: number;
  readonly rampMs: number;
  readonly baseline: MemorySnapshot;
  readonly loaded: MemorySnapshot;
  readonly released: MemorySnapshot;
  /** (loaded - baseline) / ready. */
  readonly rssPerConnectionBytes: number;
  readonly heapPerConnectionBytes: number;
  readonly externalPerConnectionBytes: number;
  /**
   * (RSS growth - growth of V8's young generation) / ready: the young generation grows with
   * the handshakes' allocation rate and is not held per connection.
   */
  readonly rssLessNewSpacePerConnectionBytes: number;
  readonly loadCpuMs: number;
  readonly churn?: ChurnReport;
}

/** Memory before and after users connect, chat and leave (agentsocket's first run). */
export interface ChurnReport {
  readonly users: number;
  readonly completed: number;
  readonly failed: number;
  readonly wallMs: number;
  readonly before: MemorySnapshot;
  readonly afterChurn: MemorySnapshot;
  readonly afterSweep?: MemorySnapshot;
  /** (afterChurn - before) heap / users. */
  readonly heapPerChurnedUserBytes: number;
  readonly heapPerChurnedUserAfterSweepBytes?: number;
}

/** What the memory phase measured with one engine. */
export interface MemoryPhaseResult {
  readonly sizes: MemorySizes;
  readonly runs: Record<Target, MemoryRun[]>;
  readonly median: Record<Target, {
    rssPerConnectionBytes: number;
    heapPerConnectionBytes: number;
    externalPerConnectionBytes: number;
    rssLessNewSpacePerConnectionBytes: number;
    ready: number;
    failed: number;
  }>;
  readonly churn?: ChurnReport;
}

async function memoryRun(
  context: PhaseContext,
  target: Target,
  tag: string,
  withChurn: boolean,
): Promise<MemoryRun> {
  const m = sizesOf(context);
  const timeoutMs = context.settings.timeoutMs;
  const env = context.engine!.env;
  const server = await BenchServer.start(target, {
    env: { ...env, EVENT_RETENTION_SECONDS: String(m.retentionSeconds) },
    exposeGc: true,
  });
  let holders: Holders | undefined;
  try {
    const hold = (firstUser: number, count: number) =>
      new Holders(
        {
          mode: "hold",
          target,
          url: server.wsUrl,
          secret: BENCH_SECRET,
          userPrefix: `memory-${tag}-`,
          firstUser,
          count,
          timeoutMs,
          concurrency: m.concurrency,
        },
        m.perProcess,
        timeoutMs * 20,
      );
    // Warm-up: the same code paths once, so the baseline holds compiled code and pools.
    const warm = hold(0, m.warmup);
    await warm.holding();
    await warm.release();
    await server.waitIdle();
    const baseline = await server.snapshot();

    holders = hold(m.warmup, m.connections);
    const report: HoldReport = await holders.holding();
    await sleep(1000);
    const loaded = await server.snapshot();
    const results: HoldResult[] = await holders.release();
    holders = undefined;
    await server.waitIdle();
    const released = await server.snapshot();
    const per = (field: "rssKiB" | "heapUsed" | "external", scale: number) =>
      ((loaded[field] - baseline[field]) * scale) / Math.max(1, report.ready);
    context.note(
      `memory ${tag} ${target}: ${report.ready} ready, ${report.failed} failed, ` +
        `RSS ${fmt(per("rssKiB", 1024) / 1024)} KiB/conn, heap ${
          fmt(per("heapUsed", 1) / 1024)
        } KiB/conn`,
    );

    let churn: ChurnReport | undefined;
    if (withChurn) {
      // The memory engine drops a user whole once it has no subscriber, no active run and
      // nothing newer than the retention; it sweeps every min(60 s, retention). Start from a
      // swept state, so that what is left after the churn's own sweep is the churn's.
      const sweepMs = (m.retentionSeconds * 2 + 1) * 1000;
      if (m.waitForSweep) await sleep(sweepMs);
      const before = m.waitForSweep ? await server.snapshot() : released;
      const result = await runLoad<ChurnResult>({
        mode: "churn",
        target,
        url: server.wsUrl,
        secret: BENCH_SECRET,
        userPrefix: `churn-${tag}-`,
        firstUser: 0,
        count: m.churnUsers,
        timeoutMs,
        concurrency: m.churnConcurrency,
      }, timeoutMs * 20);
      await server.waitIdle();
      const afterChurn = await server.snapshot();
      let afterSweep: MemorySnapshot | undefined;
      if (m.waitForSweep) {
        await sleep(sweepMs);
        afterSweep = await server.snapshot();
      }
      churn = {
        users: m.churnUsers,
        completed: result.completed,
        failed: result.failed,
        wallMs: result.wallMs,
        before,
        afterChurn,
        afterSweep,
        heapPerChurnedUserBytes: (afterChurn.heapUsed - before.heapUsed) / m.churnUsers,
        heapPerChurnedUserAfterSweepBytes: afterSweep
          ? (afterSweep.heapUsed - before.heapUsed) / m.churnUsers
          : undefined,
      };
      context.note(
        `churn ${tag}: ${result.completed}/${m.churnUsers} users, heap ${
          fmt(churn.heapPerChurnedUserBytes)
        } B/user after churn${
          afterSweep
            ? `, ${fmt(churn.heapPerChurnedUserAfterSweepBytes!)} B/user after sweep ` +
              `(engine users ${afterSweep.engineUsers ?? "n/a"})`
            : ""
        }`,
      );
    }
    return {
      ready: report.ready,
      failed: report.failed,
      dropped: results.reduce((s, r) => s + r.dropped, 0),
      rampMs: report.rampMs,
      baseline,
      loaded,
      released,
      rssPerConnectionBytes: per("rssKiB", 1024),
      heapPerConnectionBytes: per("heapUsed", 1),
      externalPerConnectionBytes: per("external", 1),
      rssLessNewSpacePerConnectionBytes: (
        (loaded.rssKiB - baseline.rssKiB) * 1024 - (loaded.newSpace - baseline.newSpace)
      ) / Math.max(1, report.ready),
      loadCpuMs: results.reduce((s, r) => s + r.loadCpuMs, 0),
      churn,
    };
  } finally {
    holders?.kill();
    await server.stop();
  }
}

function rows(context: PhaseContext, p: MemoryPhaseResult): Row[] {
  const section = `memory, ${p.sizes.connections} idle connections (${context.engine!.label})`;
  const a = p.median.agentsocket;
  const b = p.median.bare;
  const kib = (bytes: number) => bytes / 1024;
  const rows: Row[] = [
    {
      section,
      metric: "RSS per idle connection (KiB)",
      cells: { agentsocket: kib(a.rssPerConnectionBytes), bare: kib(b.rssPerConnectionBytes) },
      ratio: kib(a.rssPerConnectionBytes - b.rssPerConnectionBytes),
      difference: true,
      target: "≤ bare + 6 KB",
      met: a.rssPerConnectionBytes - b.rssPerConnectionBytes <= 6000,
    },
    {
      section,
      metric: "JS heap per idle connection (KiB)",
      cells: { agentsocket: kib(a.heapPerConnectionBytes), bare: kib(b.heapPerConnectionBytes) },
      ratio: kib(a.heapPerConnectionBytes - b.heapPerConnectionBytes),
      difference: true,
    },
    {
      section,
      metric: "ready / open connections held",
      cells: { agentsocket: a.ready, bare: b.ready },
    },
  ];
  if (p.churn) {
    const c = p.churn;
    rows.push({
      section,
      metric: `heap per churned user after churn (B, ${c.completed}/${c.users} users)`,
      cells: { agentsocket: c.heapPerChurnedUserBytes },
    });
    if (c.afterSweep) {
      rows.push({
        section,
        metric: "heap per churned user after the idle sweep (B; the memory store's history)",
        cells: { agentsocket: c.heapPerChurnedUserAfterSweepBytes },
      });
      if (c.afterSweep.engineUsers !== undefined) {
        rows.push({
          section,
          metric: "event-engine users held after the sweep",
          cells: { agentsocket: c.afterSweep.engineUsers },
          target: "0",
          met: c.afterSweep.engineUsers === 0,
        });
      }
    }
    rows.push({
      section,
      metric: "connections left after churn",
      cells: { agentsocket: c.afterChurn.connections },
      target: "0",
      met: c.afterChurn.connections === 0,
    });
  }
  return rows;
}

/** The memory phase. */
export const memoryPhase: Phase = {
  name: "memory",
  summary: "RSS and heap per idle connection after a forced GC; memory after churn and sweep",
  engines: ["memory", "services"],
  async run(context) {
    const sizes = sizesOf(context);
    const tag = context.engine!.tag;
    const runs: Record<Target, MemoryRun[]> = { agentsocket: [], bare: [] };
    for (let r = 0; r < sizes.runs; r++) {
      for (const target of pairOrder(r)) {
        runs[target].push(
          await memoryRun(context, target, `${tag}-${r}`, target === "agentsocket" && r === 0),
        );
      }
    }
    const med = (target: Target) => ({
      rssPerConnectionBytes: median(runs[target].map((r) => r.rssPerConnectionBytes)),
      heapPerConnectionBytes: median(runs[target].map((r) => r.heapPerConnectionBytes)),
      externalPerConnectionBytes: median(runs[target].map((r) => r.externalPerConnectionBytes)),
      rssLessNewSpacePerConnectionBytes: median(
        runs[target].map((r) => r.rssLessNewSpacePerConnectionBytes),
      ),
      ready: median(runs[target].map((r) => r.ready)),
      failed: runs[target].reduce((s, r) => s + r.failed, 0),
    });
    const result: MemoryPhaseResult = {
      sizes,
      runs,
      median: { agentsocket: med("agentsocket"), bare: med("bare") },
      churn: runs.agentsocket[0]?.churn,
    };
    return { rows: rows(context, result), result };
  },
};
