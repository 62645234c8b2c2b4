/**
 * `stream`: model-backed runs (`AGENT=llm`) against a local OpenAI-compatible server that
 * streams as fast as it is read: R concurrent runs of P pieces each, with the engine of the
 * pass. It reports pieces/s taken in, events/s sent out, CPU per piece of agentsocket, of the
 * model server and (with PostgreSQL and Redis) of their servers, `agent_delta` events per run
 * per second (at most 1000 / `STREAM_FLUSH_MS` + 1, checked), the latency from the model writing
 * a run's first piece to the client receiving its first `agent_delta`, and whether every run's
 * terminal `data.text` is exactly its pieces.
 *
 * The model server (`../model_server.ts`, the tests' fake server in its fast mode) runs in its
 * own process, so its CPU is not agentsocket's; it stamps the first piece of every answer with
 * the time it wrote it ({@link preciseNow}: `performance.timeOrigin + performance.now()`, the
 * machine's clock at sub-microsecond resolution), and the load generator compares that with its
 * own reading when the first `agent_delta` arrives. Both processes read the same kernel clock;
 * before each run the load generator also measures the model server's clock against its own
 * (the exchange with the shortest round trip; the offset is known to ± half that round trip),
 * and the phase reports that check beside the latency instead of assuming it.
 *
 * The first piece's latency is taken three ways, since on one process the runs share a core:
 * all runs started at once (the burst of starts queues every run's setup behind the others'),
 * runs started one by one while the others stream (the queue of every streaming run's pieces, no
 * burst), and one run at a time (an idle server: what the path itself costs).
 *
 * Each repeat also reads the same number of replies straight from the model server (`direct`),
 * one hop fewer and no agentsocket: one at a time, the floor of the measurement chain (the model
 * server's own delay in writing, one loopback HTTP hop, the client's reading); all at once, how
 * fast the model server and a bare reader go (the load generator then reads every piece itself,
 * so its latency is its own saturation and is left out of the table).
 *
 * @module
 */
import type { CpuProbe, StreamResult, StreamVia } from "../_load_protocol.ts";
import { BenchServer, runLoad } from "../_processes.ts";
import { fmt } from "../_report.ts";
import type { Row } from "../_report.ts";
import { medianOfRuns, rotation, summarize } from "../_stats.ts";
import type { Summary } from "../_stats.ts";
import { preciseNow } from "../_stream_text.ts";
import { cpuProfileOf, raceCounters } from "./_pair.ts";
import { BENCH_SECRET } from "./phase.ts";
import type { Phase, PhaseContext } from "./phase.ts";

const MODEL_SCRIPT = new URL("../model_server.ts", import.meta.url).pathname;

/** The model agent's model name in the bench (the model server answers any). */
const MODEL_NAME = "bench-model";

/** The goal on the first piece's latency, p99, ms, by engine. */
export const STREAM_LATENCY_GOAL_MS = { memory: 5, services: 15 } as const;

/** Sizes of the stream phase. */
export interface StreamSizes {
  /** Concurrent runs, one user each. */
  readonly runs: number;
  /** Pieces of each reply. */
  readonly pieces: number;
  /** agentsocket's `STREAM_FLUSH_MS`. */
  readonly flushMs: number;
  /** Handshakes in flight while the users connect. */
  readonly concurrency: number;
  /** Runs one at a time, per repeat, for the first piece's latency of an idle server. */
  readonly serialRuns: number;
  /** Runs started one by one while the concurrent ones stream, per repeat, and their gap. */
  readonly lateRuns: number;
  readonly lateGapMs: number;
  /** Repeats of each measurement: `--runs`, at most 3 in the full mode (a repeat takes minutes). */
  readonly repeats: number;
  /** How long the load generator waits for one run to end, ms: at least 1 ms per piece. */
  readonly runTimeoutMs: number;
}

function integerFlag(context: PhaseContext, name: string, fallback: number, min: number): number {
  const raw = context.settings.flags[name];
  if (raw === undefined || raw === false) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`Option "--${name}" must be an integer ≥ ${min}, received ${raw}`);
  }
  return value;
}

/** The phase's sizes, from the mode and its flags. */
export function streamSizes(context: PhaseContext): StreamSizes {
  const quick = context.settings.mode === "quick";
  const runs = integerFlag(context, "stream-runs", quick ? 10 : 100, 1);
  const pieces = integerFlag(context, "stream-pieces", quick ? 200 : 2000, 2);
  return {
    runs,
    pieces,
    flushMs: integerFlag(context, "stream-flush-ms", 40, 0),
    concurrency: 100,
    serialRuns: quick ? 5 : 20,
    lateRuns: quick ? 3 : 10,
    lateGapMs: 250,
    repeats: quick ? context.settings.runs : Math.min(context.settings.runs, 3),
    // A slow server (or a busy machine) is measured, not failed: allow 1 ms per piece.
    runTimeoutMs: Math.max(context.settings.timeoutMs * 4, runs * pieces),
  };
}

/** The most `agent_delta` events a run may publish in a second: 1000 / flush + 1. */
export function deltaBound(flushMs: number): number {
  return flushMs === 0 ? Infinity : Math.floor(1000 / flushMs) + 1;
}

/** A stream run without its text mismatch samples (kept once per phase). */
type StreamRun = Omit<StreamResult, "textMismatches">;

/** How runs were started: all at once, one after another, or one by one while others stream. */
type Pace = "concurrent" | "late" | "serial";

/** Per-piece CPU (µs) of every measured process, and agentsocket with its services. */
interface CpuPerPiece {
  readonly server: number;
  readonly model: number;
  readonly redis?: number;
  readonly postgres?: number;
  /** agentsocket and its services (the model server apart). */
  readonly total: number;
}

function cpuPerPiece(run: StreamRun): CpuPerPiece {
  const per = (name: string) =>
    run.cpuMs[name] === undefined ? undefined : (run.cpuMs[name] * 1000) / Math.max(1, run.pieces);
  const server = per("server") ?? NaN;
  const redis = per("redis");
  const postgres = per("postgres");
  return {
    server,
    model: per("model") ?? NaN,
    redis,
    postgres,
    total: server + (redis ?? 0) + (postgres ?? 0),
  };
}

/** What the stream phase measured with one engine. */
export interface StreamPhaseResult {
  readonly sizes: StreamSizes;
  readonly engine: string;
  /** The concurrent runs of every repeat. */
  readonly runs: Record<StreamVia, StreamRun[]>;
  /** The runs one at a time of every repeat. */
  readonly serial: Record<StreamVia, StreamRun[]>;
  readonly median: Record<StreamVia, MedianRun>;
  /** The first piece's latency, every repeat's runs pooled, by pace and path. */
  readonly latency: Record<Pace, Record<StreamVia, Summary>>;
  /** Over every repeat: runs whose text checked out, of all runs; failed runs. */
  readonly textExact: { readonly exact: number; readonly of: number };
  readonly textMismatches: readonly string[];
  readonly failedRuns: Record<StreamVia, number>;
  /** The busiest second of any run in any repeat, and the bound. */
  readonly deltaBusiestSecond: number;
  readonly deltaBound: number;
  /**
   * The clock checks of every repeat: the largest |offset| and half round trip, and whether
   * every offset was within its half round trip (the clocks agree as far as can be told).
   */
  readonly clock: {
    readonly worstOffsetMs: number;
    readonly worstHalfRttMs: number;
    readonly agree: boolean;
  };
  readonly latencyGoalMs: number;
  readonly raceViolations: number;
  readonly closes1011: number;
}

/** The median of several runs (its latency is per-repeat: the pooled one is in the result). */
type MedianRun =
  & Omit<StreamRun, "firstPieceSamples" | "lateFirstPieceSamples">
  & { cpuPerPieceUs: CpuPerPiece };

function median(runs: readonly StreamRun[]): MedianRun {
  const { firstPieceSamples: _s, lateFirstPieceSamples: _l, ...rest } = medianOfRuns(runs);
  return { ...rest, cpuPerPieceUs: medianOfRuns(runs.map(cpuPerPiece)) };
}

/** The latency of every run of several repeats, pooled (a run without a first piece counts as
 * the time limit). */
function pooledLatency(
  runs: readonly StreamRun[],
  worst: number,
  late = false,
): Summary {
  const samples = runs.flatMap((r) => late ? r.lateFirstPieceSamples : r.firstPieceSamples);
  const ok = samples.filter((ms) => Number.isFinite(ms));
  return summarize(ok, { failures: samples.length - ok.length, worst });
}

function describe(label: string, r: StreamResult): string {
  const cpu = cpuPerPiece(r);
  return `${label}: ${fmt(r.piecesPerSecond)} pieces/s, ${fmt(r.eventsPerSecond)} events/s, ` +
    `first piece p50 ${fmt(r.firstPieceLatency.p50)} p99 ${fmt(r.firstPieceLatency.p99)} ms, ` +
    `busiest second ${r.deltaBusiestSecond} agent_delta, text exact ${r.textExact}/${r.runs}, ` +
    `${r.failedRuns} failed${
      Object.keys(r.failures).length > 0 ? ` (${JSON.stringify(r.failures)})` : ""
    }; CPU µs/piece server ${fmt(cpu.server)} model ${fmt(cpu.model)}${
      cpu.redis === undefined ? "" : ` redis ${fmt(cpu.redis)}`
    }${cpu.postgres === undefined ? "" : ` postgres ${fmt(cpu.postgres)}`}; clock offset ${
      fmt(r.clock.offsetMs, 3)
    } ± ${fmt(r.clock.rttMs / 2, 3)} ms`;
}

function rows(context: PhaseContext, p: StreamPhaseResult): Row[] {
  const section = `stream, ${p.sizes.runs} runs × ${fmt(p.sizes.pieces)} pieces, ` +
    `STREAM_FLUSH_MS=${p.sizes.flushMs}, median of ${p.sizes.repeats} repeats, latency pooled ` +
    `(${context.engine!.label}; direct: the same replies read from the model server by the load ` +
    `generator, no agentsocket)`;
  const a = p.median.agentsocket;
  const d = p.median.direct;
  const pair = (metric: string, [x, y]: [number, number], extra: Partial<Row> = {}): Row => ({
    section,
    metric,
    cells: { agentsocket: x, direct: y },
    ...extra,
  });
  const both = (metric: string, value: (r: MedianRun) => number, extra: Partial<Row> = {}) =>
    pair(metric, [value(a), value(d)], extra);
  const one = (metric: string, value: number, extra: Partial<Row> = {}): Row => ({
    section,
    metric,
    cells: { agentsocket: value },
    ...extra,
  });
  const latency = (pace: Pace, label: string): Row[] => {
    const la = p.latency[pace].agentsocket;
    // All at once, the direct path's figure is the load generator's own saturation (it reads
    // every piece itself), no floor for agentsocket's: shown in the JSON only. Late runs go
    // through agentsocket only.
    const ld = pace === "serial"
      ? p.latency[pace].direct
      : { ...p.latency[pace].direct, p50: NaN, p99: NaN };
    return [
      pair(`first piece → client p50, ${label} (ms)`, [la.p50, ld.p50], {
        ratio: pace === "serial" ? la.p50 - ld.p50 : undefined,
        difference: true,
      }),
      pair(`first piece → client p99, ${label} (ms)`, [la.p99, ld.p99], {
        ratio: pace === "serial" ? la.p99 - ld.p99 : undefined,
        difference: true,
        target: `< ${p.latencyGoalMs} ms`,
        met: la.p99 < p.latencyGoalMs,
      }),
    ];
  };
  const out: Row[] = [
    both("pieces/s in", (r) => r.piecesPerSecond, { ratio: a.piecesPerSecond / d.piecesPerSecond }),
    one("events/s out", a.eventsPerSecond),
    one("agent_delta per run per second (p50 of runs)", a.deltaRate.p50),
    one("agent_delta of one run in its busiest second (all runs)", p.deltaBusiestSecond, {
      target: `≤ ${p.deltaBound}`,
      met: p.deltaBusiestSecond <= p.deltaBound,
    }),
    ...latency("concurrent", `${p.sizes.runs} runs at once`),
    ...latency("late", `a run started while they stream (${p.latency.late.agentsocket.n} runs)`),
    ...latency("serial", "one run at a time"),
    one("clock check: worst |model − client| offset (ms)", p.clock.worstOffsetMs, {
      target: `each ≤ ½ its RTT (≤ ${fmt(p.clock.worstHalfRttMs, 3)})`,
      met: p.clock.agree,
    }),
    one("agentsocket CPU per piece (µs)", a.cpuPerPieceUs.server),
    both("model server CPU per piece (µs)", (r) => r.cpuPerPieceUs.model),
  ];
  if (a.cpuPerPieceUs.redis !== undefined) {
    out.push(one("Redis CPU per piece (µs)", a.cpuPerPieceUs.redis));
  }
  if (a.cpuPerPieceUs.postgres !== undefined) {
    out.push(one("PostgreSQL CPU per piece (µs)", a.cpuPerPieceUs.postgres));
  }
  if (a.cpuPerPieceUs.redis !== undefined || a.cpuPerPieceUs.postgres !== undefined) {
    out.push(one("agentsocket + services CPU per piece (µs)", a.cpuPerPieceUs.total));
  }
  out.push(
    both("load generator CPU per piece (µs)", (r) => (r.loadCpuMs * 1000) / Math.max(1, r.pieces)),
    one("runs whose data.text is exactly their pieces (all repeats)", p.textExact.exact, {
      target: `${p.textExact.of}`,
      met: p.textExact.exact === p.textExact.of,
    }),
    {
      section,
      metric: "failed runs (all repeats)",
      cells: { agentsocket: p.failedRuns.agentsocket, direct: p.failedRuns.direct },
      target: "0",
      met: p.failedRuns.agentsocket === 0 && p.failedRuns.direct === 0,
    },
    one("race violations / 1011 closes", p.raceViolations + p.closes1011, {
      target: "0",
      met: p.raceViolations + p.closes1011 === 0,
    }),
  );
  return out;
}

/** The README's table for this engine (one line; the header repeats per engine). */
function markdown(context: PhaseContext, p: StreamPhaseResult): string {
  const a = p.median.agentsocket;
  const cpu = a.cpuPerPieceUs;
  const latency = (pace: Pace) => {
    const l = p.latency[pace].agentsocket;
    return `${fmt(l.p50, 1)} / ${fmt(l.p99, 1)}`;
  };
  const services = cpu.redis !== undefined || cpu.postgres !== undefined
    ? ` + ${fmt(cpu.redis, 0)} Redis + ${fmt(cpu.postgres, 0)} PostgreSQL`
    : "";
  return [
    "| engine | pieces/s in | events/s out | agent_delta per run per s (busiest s) | CPU µs per piece | first piece → client ms, p50 / p99: one run at a time | a run started while the others stream | all runs started at once | data.text exact |",
    "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    `| ${context.engine!.label} | ${fmt(Math.round(a.piecesPerSecond / 10) * 10)} | ${
      fmt(Math.round(a.eventsPerSecond))
    } | ${fmt(a.deltaRate.p50, 1)} (${p.deltaBusiestSecond} ≤ ${p.deltaBound}) | ${
      fmt(cpu.server, 0)
    } agentsocket${services} (model server ${fmt(cpu.model, 1)}) | ${latency("serial")} | ${
      latency("late")
    } | ${latency("concurrent")} | ${p.textExact.exact}/${p.textExact.of} |`,
  ].join("\n");
}

/** Starts the model server: every answer `pieces` pieces long. */
async function startModel(sizes: StreamSizes): Promise<BenchServer> {
  return await BenchServer.spawn("model", {
    command: {
      program: Deno.execPath(),
      args: ["run", "--allow-net", "--allow-env", MODEL_SCRIPT],
    },
    env: { MODEL_PIECES: String(sizes.pieces) },
  });
}

/** The stream phase. */
export const streamPhase: Phase = {
  name: "stream",
  summary: "R model-backed runs × P pieces at full speed: pieces/s, first-piece latency, CPU",
  engines: ["memory", "services"],
  flags: {
    "stream-runs": {
      type: "string",
      description: "stream: concurrent runs (quick 10, full 100)",
    },
    "stream-pieces": {
      type: "string",
      description: "stream: pieces of each reply (quick 200, full 2000)",
    },
    "stream-flush-ms": {
      type: "string",
      description: "stream: agentsocket's STREAM_FLUSH_MS (default 40)",
    },
  },
  async run(context) {
    const engine = context.engine!;
    const sizes = streamSizes(context);
    const timeoutMs = context.settings.timeoutMs;
    const model = await startModel(sizes);
    let server: BenchServer | undefined;
    try {
      server = await BenchServer.start("agentsocket", {
        env: {
          ...engine.env,
          AGENT: "llm",
          LLM_BASE_URL: `${model.url}/v1`,
          LLM_MODEL: MODEL_NAME,
          STREAM_FLUSH_MS: String(sizes.flushMs),
        },
        cpuProfile: cpuProfileOf(context, `stream-${engine.tag}`),
      });
      const agentsocket = server;
      const probes: CpuProbe[] = [
        { name: "server", pid: agentsocket.pid, tree: false },
        { name: "model", pid: model.pid, tree: false },
        ...engine.probes,
      ];
      let user = 0;
      const measure = async (
        via: StreamVia,
        runs: number,
        pace: Pace = "concurrent",
      ): Promise<StreamResult> => {
        const result = await runLoad<StreamResult>({
          mode: "stream",
          via,
          target: "agentsocket",
          url: agentsocket.wsUrl,
          modelUrl: model.url,
          secret: BENCH_SECRET,
          userPrefix: `stream-${engine.tag}-`,
          firstUser: user,
          count: runs,
          timeoutMs: sizes.runTimeoutMs,
          pieces: sizes.pieces,
          concurrency: sizes.concurrency,
          sequential: pace === "serial",
          lateRuns: sizes.lateRuns,
          lateGapMs: sizes.lateGapMs,
          probes,
        }, sizes.runTimeoutMs + timeoutMs * 2);
        user += runs;
        if (via === "agentsocket") await agentsocket.waitIdle();
        return result;
      };
      // Warm-up: the model agent's first runs load the AI SDK's code paths.
      for (const via of ["agentsocket", "direct"] as const) {
        const warm = await measure(via, Math.min(10, sizes.runs));
        context.note(describe(`stream ${engine.tag} ${via} warm-up`, warm));
      }
      const all: Record<StreamVia, StreamResult[]> = { agentsocket: [], direct: [] };
      const serial: Record<StreamVia, StreamResult[]> = { agentsocket: [], direct: [] };
      for (let r = 0; r < sizes.repeats; r++) {
        for (const via of rotation<StreamVia>(["agentsocket", "direct"], r)) {
          const result = await measure(via, sizes.runs);
          all[via].push(result);
          context.note(describe(`stream ${engine.tag} ${via} run ${r + 1}`, result));
        }
        for (const via of rotation<StreamVia>(["agentsocket", "direct"], r)) {
          const result = await measure(via, sizes.serialRuns, "serial");
          serial[via].push(result);
          context.note(describe(`stream ${engine.tag} ${via} one at a time ${r + 1}`, result));
        }
      }
      const strip = (runs: StreamResult[]): StreamRun[] =>
        runs.map(({ textMismatches: _mismatches, ...rest }) => rest);
      const kept = { agentsocket: strip(all.agentsocket), direct: strip(all.direct) };
      const keptSerial = { agentsocket: strip(serial.agentsocket), direct: strip(serial.direct) };
      const every = [...all.agentsocket, ...all.direct, ...serial.agentsocket, ...serial.direct];
      const worst = sizes.runTimeoutMs;
      const checked = [...all.agentsocket, ...serial.agentsocket];
      const result: StreamPhaseResult = {
        sizes,
        engine: engine.name,
        runs: kept,
        serial: keptSerial,
        median: { agentsocket: median(kept.agentsocket), direct: median(kept.direct) },
        latency: {
          concurrent: {
            agentsocket: pooledLatency(kept.agentsocket, worst),
            direct: pooledLatency(kept.direct, worst),
          },
          late: {
            agentsocket: pooledLatency(kept.agentsocket, worst, true),
            direct: pooledLatency([], worst, true),
          },
          serial: {
            agentsocket: pooledLatency(keptSerial.agentsocket, worst),
            direct: pooledLatency(keptSerial.direct, worst),
          },
        },
        textExact: {
          exact: checked.reduce((sum, r) => sum + r.textExact, 0),
          of: checked.reduce((sum, r) => sum + r.runs, 0),
        },
        textMismatches: checked.flatMap((r) => r.textMismatches).slice(0, 5),
        failedRuns: {
          agentsocket: checked.reduce((sum, r) => sum + r.failedRuns, 0),
          direct: [...all.direct, ...serial.direct].reduce((sum, r) => sum + r.failedRuns, 0),
        },
        deltaBusiestSecond: Math.max(...checked.map((r) => r.deltaBusiestSecond)),
        deltaBound: deltaBound(sizes.flushMs),
        clock: {
          worstOffsetMs: Math.max(...every.map((r) => Math.abs(r.clock.offsetMs))),
          worstHalfRttMs: Math.max(...every.map((r) => r.clock.rttMs / 2)),
          agree: every.every((r) => Math.abs(r.clock.offsetMs) <= r.clock.rttMs / 2),
        },
        latencyGoalMs: STREAM_LATENCY_GOAL_MS[engine.name],
        ...await raceCounters(agentsocket),
      };
      context.note(
        `stream ${engine.tag}: clock check at ${new Date(preciseNow()).toISOString()}: worst ` +
          `|offset| ${fmt(result.clock.worstOffsetMs, 3)} ms, worst ½ RTT ${
            fmt(result.clock.worstHalfRttMs, 3)
          } ms`,
      );
      return { rows: rows(context, result), result, markdown: markdown(context, result) };
    } finally {
      await Promise.all([server?.stop(), model.stop()]);
    }
  },
};
