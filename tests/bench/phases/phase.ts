/**
 * What a benchmark phase is: one module per phase (`*_phase.ts` in this folder), listed in
 * `mod.ts`, each with the same shape. `run.ts` parses the flags, opens the engines' services,
 * runs every selected phase through {@link Phase.run} and prints and saves what they return.
 *
 * A phase owns its sizes (quick and full), its servers and load processes, and its rows. It
 * declares the engines it runs with and any flags of its own, which `run.ts` adds to the
 * command line (`--help` lists them).
 *
 * @module
 */
import type { CpuProbe } from "../_load_protocol.ts";
import type { Row } from "../_report.ts";
import type { Settings } from "../_settings.ts";

/** The JWT secret every bench server verifies with (HS256, ≥ 32 bytes). */
export const BENCH_SECRET = "agentsocket-bench-secret-of-at-least-32-bytes";

/** The engines agentsocket runs with in the bench. */
export const ENGINE_NAMES = ["memory", "services"] as const;

/** `memory`: the memory engine and store; `services`: PostgreSQL and Redis. */
export type EngineName = typeof ENGINE_NAMES[number];

/** A flag a phase adds to the command line (`--name=value`, or `--name` for a boolean). */
export interface PhaseFlag {
  readonly type: "string" | "boolean";
  /** One line for `--help`. */
  readonly description: string;
  /** The accepted values of a string flag. */
  readonly choices?: readonly string[];
  /** A string flag that takes a comma list of `choices`. */
  readonly list?: boolean;
  /** The value when the flag is not given (string flags). */
  readonly default?: string;
}

/** The engine a phase runs with, set up by `run.ts`. */
export interface EngineContext {
  readonly name: EngineName;
  /** For section titles: `memory engine`, `PostgreSQL + Redis`. */
  readonly label: string;
  /** Short, for user ids and profile names: `mem`, `svc`. */
  readonly tag: string;
  /** agentsocket's environment for this engine (JWT secret; the database and Redis URLs). */
  readonly env: Readonly<Record<string, string>>;
  /**
   * The services' server processes whose CPU the load generators read beside the server's:
   * `redis` and `postgres` with PostgreSQL and Redis; none with the memory engine. One that
   * could not be found is missing here and explained in {@link probeNotes}.
   */
  readonly probes: readonly CpuProbe[];
  readonly probeNotes: readonly string[];
  /** The Redis server and the key prefix every key of this run lives under (services only). */
  readonly redis?: { readonly url: string; readonly prefix: string };
}

/** What a phase is given. */
export interface PhaseContext {
  readonly settings: Settings;
  /** The engine of this pass; undefined for a phase that declares no engine. */
  readonly engine?: EngineContext;
  /** Where results go (`bench/results/`); CPU profiles go to its `profiles/`. */
  readonly resultsDir: string;
  /** Logs a progress line on stderr, with the elapsed time and the load average. */
  note(message: string): void;
}

/** What a phase returns. */
export interface PhaseOutcome {
  /** Printed as tables, one per section, and saved. */
  readonly rows: readonly Row[];
  /** Everything measured, saved in the JSON (runs, medians, sizes). */
  readonly result: unknown;
  /** A Markdown table for the README, printed after the tables. */
  readonly markdown?: string;
}

/** One phase of `deno task bench`. */
export interface Phase {
  /** What `--only` names it. */
  readonly name: string;
  /** One line for `--help`. */
  readonly summary: string;
  /**
   * The engines it runs with, once each (in the order of `--engines`); empty for a phase that
   * runs once and chooses its own (scale, micro).
   */
  readonly engines: readonly EngineName[];
  /** Flags of its own, by name (without `--`). */
  readonly flags?: Readonly<Record<string, PhaseFlag>>;
  run(context: PhaseContext): Promise<PhaseOutcome>;
}

/** Thrown by a phase that cannot run here (a tool or service missing); the run goes on. */
export class PhaseSkipped extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "PhaseSkipped";
  }
}
