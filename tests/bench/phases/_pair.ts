/**
 * agentsocket and the bare server started side by side for one phase, and the order they are
 * measured in: alternated per repeat, so that neither always runs first (after a warm-up, with
 * a cooler cache, or while something else on the machine winds down).
 *
 * @module
 */
import type { CpuProbe, Target } from "../_load_protocol.ts";
import { BenchServer } from "../_processes.ts";
import { rotation } from "../_stats.ts";
import type { PhaseContext } from "./phase.ts";

/** Both servers of a phase. */
export type Pair = Record<Target, BenchServer>;

/** The order of repeat `repeat`: agentsocket first on even repeats, bare first on odd ones. */
export function pairOrder(repeat: number): Target[] {
  return rotation<Target>(["agentsocket", "bare"], repeat);
}

/** Where `--cpu-prof` writes a server's profile, or undefined without it. */
export function cpuProfileOf(
  context: PhaseContext,
  name: string,
): { dir: string; name: string } | undefined {
  return context.settings.cpuProfile
    ? { dir: `${context.resultsDir}/profiles`, name: `${name}.cpuprofile` }
    : undefined;
}

/** Starts agentsocket, then the bare server, with the same environment. */
export async function startPair(
  context: PhaseContext,
  env: Readonly<Record<string, string>>,
  label: string,
): Promise<Pair> {
  const agentsocket = await BenchServer.start("agentsocket", {
    env: { ...env },
    cpuProfile: cpuProfileOf(context, label),
  });
  try {
    const bare = await BenchServer.start("bare", {
      env: { ...env },
      cpuProfile: cpuProfileOf(context, `${label}-bare`),
    });
    return { agentsocket, bare };
  } catch (error) {
    await agentsocket.stop();
    throw error;
  }
}

/** Stops both servers. */
export async function stopPair(pair: Pair): Promise<void> {
  await Promise.all([pair.agentsocket.stop(), pair.bare.stop()]);
}

/** The server process's probe, then the engine's (Redis, PostgreSQL). */
export function probesOf(server: BenchServer, context: PhaseContext): CpuProbe[] {
  return [{ name: "server", pid: server.pid, tree: false }, ...(context.engine?.probes ?? [])];
}

/** The race violations and 1011 closes agentsocket counted (both must stay 0). */
export async function raceCounters(
  server: BenchServer,
): Promise<{ raceViolations: number; closes1011: number }> {
  return {
    raceViolations: await server.metric("agentsocket_race_violations_total"),
    closes1011: await server.metric("agentsocket_connection_close_total", 'code="1011"'),
  };
}
