/**
 * `micro`: `deno bench` of the hot paths (every `*_bench.ts` beside `run.ts`):
 * `RaceConditionDetector` checks, state transitions, frame parse and serialise, the mailbox, and
 * one event through an actor.
 *
 * @module
 */
import type { Row } from "../_report.ts";
import type { Phase } from "./phase.ts";

const BENCH_DIR = new URL("../", import.meta.url).pathname;

const TRANSITION_ROW = "state transition (table check + write + latch), derived";

/** One `Deno.bench` of the micro phase. */
export interface MicroResult {
  readonly name: string;
  readonly group: string | null;
  readonly avgNs: number;
  readonly p75Ns: number;
  readonly p99Ns: number;
  readonly n: number;
}

async function microBenches(): Promise<MicroResult[]> {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(BENCH_DIR)) {
    if (entry.isFile && entry.name.endsWith("_bench.ts")) files.push(`${BENCH_DIR}${entry.name}`);
  }
  files.sort();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "--json", "--allow-env", "--allow-read", ...files],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`deno bench failed:\n${new TextDecoder().decode(output.stderr)}`);
  }
  const report = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    benches: {
      name: string;
      group: string | null;
      results: { ok?: { avg: number; p75: number; p99: number; n: number } }[];
    }[];
  };
  return report.benches.flatMap((bench) => {
    const ok = bench.results[0]?.ok;
    return ok
      ? [{
        name: bench.name,
        group: bench.group,
        avgNs: ok.avg,
        p75Ns: ok.p75,
        p99Ns: ok.p99,
        n: ok.n,
      }]
      : [];
  });
}

const MICRO_TARGETS: Record<string, { ns: number; text: string }> = {
  "RaceConditionDetector.checkSend() allowed send": { ns: 100, text: "≤ 100 ns" },
  "RaceConditionDetector.checkInbound()": { ns: 100, text: "≤ 100 ns" },
  [TRANSITION_ROW]: { ns: 200, text: "≤ 200 ns" },
};

/**
 * One row per bench, per operation: a `[xN]` suffix divides by N; one transition is derived
 * from the lifecycle bench (see connection_state_bench.ts).
 */
function microRows(micro: MicroResult[]): Row[] {
  const section = "micro (deno bench, ns per operation)";
  const rows: Row[] = micro.map((m) => {
    const times = /\[x(\d+)\]$/.exec(m.name);
    const name = times ? m.name.slice(0, times.index).trim() + " (per op)" : m.name;
    const ns = m.avgNs / (times ? Number(times[1]) : 1);
    const target = MICRO_TARGETS[name];
    return {
      section,
      metric: name,
      cells: { agentsocket: ns },
      target: target?.text,
      met: target ? ns <= target.ns : undefined,
    };
  });
  const life = micro.find((m) => m.name.startsWith("connection lifecycle:"));
  const latches = micro.find((m) => m.name.startsWith("new ReadinessLatches()"));
  if (life && latches) {
    const ns = (life.avgNs - latches.avgNs) / 6;
    const target = MICRO_TARGETS[TRANSITION_ROW];
    rows.push({
      section,
      metric: TRANSITION_ROW,
      cells: { agentsocket: ns },
      target: target.text,
      met: ns <= target.ns,
    });
  }
  return rows;
}

/** The micro phase. */
export const microPhase: Phase = {
  name: "micro",
  summary: "deno bench of the hot paths (ns per operation)",
  engines: [],
  async run(context) {
    context.note("micro: deno bench");
    const result = await microBenches();
    return { rows: microRows(result), result };
  },
};
