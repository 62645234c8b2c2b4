/**
 * The command line of `deno task bench`, parsed with `node:util` `parseArgs`: the flags every
 * run has, plus those each phase declares ({@link PhaseFlag}).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ParseArgsOptionsConfig } from "node:util";
import type { EngineName, Phase, PhaseFlag } from "./phases/phase.ts";
import { ENGINE_NAMES } from "./phases/phase.ts";

/** What a run does, from its flags. */
export interface Settings {
  readonly mode: "quick" | "full";
  /** Repeats of each measured run (a burst runs twice as many: it is the noisiest figure). */
  readonly runs: number;
  /** The phases to run, in the order of the phase list. */
  readonly phases: readonly string[];
  /** Engines the engine phases run with, in this order. */
  readonly engines: readonly EngineName[];
  /** Write V8 CPU profiles of the Deno servers (their figures are slowed by the profiler). */
  readonly cpuProfile: boolean;
  /** Every phase, the default engines, runs and flags, no profiler: a run that may be quoted. */
  readonly complete: boolean;
  /** Bound on each wait of a load generator (a handshake, a run, a close), ms. */
  readonly timeoutMs: number;
  /** The values of the phases' own flags, by flag name (their defaults when not given). */
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
}

const COMMON_FLAGS = {
  quick: { type: "boolean", description: "small sizes, to check the harness (BENCH_QUICK=1)" },
  full: { type: "boolean", description: "full sizes (the default; overrides BENCH_QUICK=1)" },
  runs: { type: "string", description: "repeats of each measured run, 1-50 (quick 3, full 5)" },
  only: { type: "string", description: "comma list of phases to run (default: all)" },
  engines: {
    type: "string",
    description: "comma list of engines: memory, services (quick: memory)",
  },
  "cpu-prof": {
    type: "boolean",
    description: "write V8 CPU profiles of the Deno servers to bench/results/profiles/",
  },
  help: { type: "boolean", description: "print this help" },
} as const satisfies Record<string, { type: "string" | "boolean"; description: string }>;

/** Thrown for `--help`: its message is the usage text. */
export class HelpRequested extends Error {}

function splitList(flag: string, raw: string, known: readonly string[]): string[] {
  const items = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new TypeError(`Option "--${flag}" needs at least one value`);
  for (const item of items) {
    if (!known.includes(item)) {
      throw new TypeError(`Option "--${flag}" has unknown "${item}" (known: ${known.join(", ")})`);
    }
  }
  return items;
}

function phaseFlags(phases: readonly Phase[]): Map<string, PhaseFlag> {
  const flags = new Map<string, PhaseFlag>();
  for (const phase of phases) {
    for (const [name, flag] of Object.entries(phase.flags ?? {})) {
      if (name in COMMON_FLAGS || flags.has(name)) {
        throw new TypeError(`Phase "${phase.name}" declares "--${name}" twice`);
      }
      flags.set(name, flag);
    }
  }
  return flags;
}

/** The usage text: every flag, every phase. */
export function usage(phases: readonly Phase[]): string {
  const lines = [
    "Usage: deno task bench [flags]",
    "",
    "Flags:",
    ...Object.entries(COMMON_FLAGS).map(([name, f]) =>
      `  --${name}${f.type === "string" ? "=…" : ""}`.padEnd(28) + f.description
    ),
    ...[...phaseFlags(phases)].map(([name, f]) =>
      `  --${name}=…`.padEnd(28) + f.description +
      (f.choices ? ` (${f.choices.join(", ")}${f.default ? `; default ${f.default}` : ""})` : "")
    ),
    "",
    "Phases (in the order they run):",
    ...phases.map((p) =>
      `  ${p.name}`.padEnd(28) + p.summary +
      (p.engines.length > 0 ? ` [engines: ${p.engines.join(", ")}]` : "")
    ),
  ];
  return lines.join("\n");
}

/**
 * Parses the command line.
 *
 * @param args The arguments (`Deno.args`).
 * @param phases Every phase there is, in run order: `--only` names some, and their flags are
 *   accepted.
 * @param env The environment (`BENCH_QUICK=1` means `--quick`).
 * @throws {HelpRequested} for `--help`; a TypeError or RangeError for a bad flag.
 */
export function parseSettings(
  args: readonly string[],
  phases: readonly Phase[],
  env: { get(name: string): string | undefined } = Deno.env,
): Settings {
  const extra = phaseFlags(phases);
  const options: ParseArgsOptionsConfig = {};
  for (const [name, flag] of Object.entries(COMMON_FLAGS)) options[name] = { type: flag.type };
  for (const [name, flag] of extra) options[name] = { type: flag.type };
  const { values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false });
  if (values.help) throw new HelpRequested(usage(phases));

  const given = (name: string) => values[name] !== undefined;
  const quick = (values.quick === true || env.get("BENCH_QUICK") === "1") && values.full !== true;
  const runs = Number(values.runs ?? (quick ? 3 : 5));
  if (!Number.isSafeInteger(runs) || runs < 1 || runs > 50) {
    throw new RangeError(
      `Option "--runs" must be an integer from 1 to 50, received ${values.runs}`,
    );
  }
  const names = phases.map((p) => p.name);
  const only = given("only") ? splitList("only", String(values.only), names) : names;
  const selected = phases.filter((p) => only.includes(p.name));

  let engines: EngineName[];
  if (given("engines")) {
    engines = splitList("engines", String(values.engines), ENGINE_NAMES) as EngineName[];
  } else if (quick) {
    // Quick mode checks the harness: the memory engine, unless a phase asked for by name runs
    // with no other engine (--quick --only=socketio).
    engines = ["memory"];
    const named = given("only") ? selected : [];
    if (named.some((p) => p.engines.length > 0 && !p.engines.includes("memory"))) {
      engines.push("services");
    }
  } else {
    engines = [...ENGINE_NAMES];
  }

  const flags: Record<string, string | boolean | undefined> = {};
  for (const [name, flag] of extra) {
    const raw = values[name];
    if (flag.type === "boolean") {
      flags[name] = raw === true;
      continue;
    }
    const value = raw === undefined ? flag.default : String(raw);
    if (value !== undefined && flag.choices) {
      if (flag.list) splitList(name, value, flag.choices);
      else if (!flag.choices.includes(value)) {
        throw new TypeError(
          `Option "--${name}" must be one of ${flag.choices.join(", ")}, received "${value}"`,
        );
      }
    }
    flags[name] = value;
  }

  return {
    mode: quick ? "quick" : "full",
    runs,
    phases: selected.map((p) => p.name),
    engines,
    cpuProfile: values["cpu-prof"] === true,
    complete: !given("only") && !given("engines") && !given("runs") &&
      !given("cpu-prof") && [...extra.keys()].every((name) => !given(name)),
    timeoutMs: 30_000,
    flags,
  };
}

/** A list flag's values (see {@link PhaseFlag.list}). */
export function listFlag(settings: Settings, name: string): string[] {
  const raw = settings.flags[name];
  if (typeof raw !== "string") return [];
  return raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}
