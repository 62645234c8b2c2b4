/**
 * Every phase of `deno task bench`, in the order they run: with each engine in turn, the phases
 * that run with it; then the phases that run once.
 *
 * A new phase is one module exporting a {@link Phase} (see `phase.ts`: its name for `--only`,
 * its engines, its own flags, and `run()` returning rows and a result) and one line in
 * {@link PHASES}. The model-backed `stream` phase, against a local OpenAI-compatible server, runs
 * after `socketio`: with both engines, it starts its model server in `run()`, gives agentsocket
 * the model's URL through the environment, and reads the model server's CPU beside the others
 * with one more `CpuProbe`.
 *
 * @module
 */
import { burstPhase } from "./burst_phase.ts";
import { deliveryPhase } from "./delivery_phase.ts";
import { memoryPhase } from "./memory_phase.ts";
import { microPhase } from "./micro_phase.ts";
import type { Phase } from "./phase.ts";
import { scalePhase } from "./scale_phase.ts";
import { socketioPhase } from "./socketio_phase.ts";
import { streamPhase } from "./stream_phase.ts";

export { BENCH_SECRET, ENGINE_NAMES, PhaseSkipped } from "./phase.ts";
export type {
  EngineContext,
  EngineName,
  Phase,
  PhaseContext,
  PhaseFlag,
  PhaseOutcome,
} from "./phase.ts";

/** The phases, in run order. */
export const PHASES: readonly Phase[] = [
  burstPhase,
  deliveryPhase,
  socketioPhase,
  streamPhase,
  memoryPhase,
  scalePhase,
  microPhase,
];
