/**
 * `deno task bench`: agentsocket against a bare `Deno.upgradeWebSocket` server on the same
 * machine, and against Socket.IO, in one run. This file only orchestrates: it parses the flags
 * (`_settings.ts`), sets up each engine (the memory engine; PostgreSQL and Redis with a database
 * and a key prefix of the run's own, removed after, and their server processes found for CPU
 * readings: `_services.ts`), runs the selected phases (`phases/mod.ts`, one module each), prints
 * their tables and writes everything as JSON under `bench/results/`.
 *
 * Usage: `deno task bench [--quick] [--runs=N] [--only=burst,delivery,…]
 * [--engines=memory,services] [--cpu-prof] [phase flags]`; `deno task bench --help` lists the
 * phases and every flag. Quick mode checks the harness (small sizes, memory engine unless
 * `--engines` or `--only` needs another); the full mode takes about half an hour, half of
 * it the stream phase (both engines).
 *
 * Load comes from separate processes; each figure is the median of several runs, the servers
 * measured in an order that alternates per repeat.
 *
 * @module
 */
import { cpuMs, loadAverage } from "./_proc.ts";
import { killAllChildren, within } from "./_processes.ts";
import { printTable } from "./_report.ts";
import type { Row } from "./_report.ts";
import { openServices } from "./_services.ts";
import type { Services } from "./_services.ts";
import { HelpRequested, parseSettings } from "./_settings.ts";
import type { Settings } from "./_settings.ts";
import { BENCH_SECRET, PHASES, PhaseSkipped } from "./phases/mod.ts";
import type { EngineContext, EngineName, Phase, PhaseContext } from "./phases/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const RESULTS_DIR = `${ROOT}bench/results`;

/** Version of the JSON written to `bench/results/`. */
const RESULT_FORMAT = 2;

// ---- logging and machine load ---------------------------------------------------------------

const started = performance.now();
function note(message: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  const [l1] = loadAverage();
  console.error(`[bench ${seconds}s load ${l1.toFixed(2)}] ${message}`);
}

interface LoadSample {
  readonly at: string;
  readonly phase: string;
  readonly loadavg: [number, number, number];
}
const loadSamples: LoadSample[] = [];
function sampleLoad(phase: string): void {
  loadSamples.push({ at: new Date().toISOString(), phase, loadavg: loadAverage() });
}

// ---- engines --------------------------------------------------------------------------------

/** What must be undone even when the run is interrupted (the database and the key prefix). */
const CLEANUPS = new Set<AsyncDisposable>();

const BASE_ENV = { JWT_SECRET: BENCH_SECRET, AGENT_STEP_DELAY_MS: "0" };

function memoryEngine(): EngineContext {
  return {
    name: "memory",
    label: "memory engine",
    tag: "mem",
    env: BASE_ENV,
    probes: [],
    probeNotes: [],
  };
}

function servicesEngine(services: Services): EngineContext {
  return {
    name: "services",
    label: "PostgreSQL + Redis",
    tag: "svc",
    env: { ...BASE_ENV, ...services.env },
    probes: services.probes,
    probeNotes: services.probeNotes,
    redis: services.redis,
  };
}

// ---- phases ---------------------------------------------------------------------------------

/** How one phase went with one engine (or once). */
type PhaseRecord =
  | { readonly status: "done"; readonly result: unknown }
  | { readonly status: "skipped"; readonly reason: string }
  | { readonly status: "failed"; readonly error: string };

interface Report {
  readonly rows: Row[];
  readonly markdown: string[];
  /** By phase, then by engine (`once` for a phase without one). */
  readonly phases: Record<string, Record<string, PhaseRecord>>;
  readonly engines: Partial<Record<EngineName, { description: string; probeNotes: string[] }>>;
}

async function runPhase(
  phase: Phase,
  context: PhaseContext,
  report: Report,
): Promise<void> {
  const key = context.engine?.name ?? "once";
  sampleLoad(`${phase.name} ${key}`);
  let record: PhaseRecord;
  try {
    const outcome = await phase.run(context);
    report.rows.push(...outcome.rows);
    if (outcome.markdown) report.markdown.push(outcome.markdown);
    record = { status: "done", result: outcome.result };
  } catch (error) {
    if (error instanceof PhaseSkipped) {
      note(`${phase.name}: skipped: ${error.message}`);
      record = { status: "skipped", reason: error.message };
    } else {
      note(`${phase.name} (${key}) failed: ${(error as Error).stack ?? error}`);
      record = { status: "failed", error: String((error as Error).stack ?? error) };
    }
  }
  (report.phases[phase.name] ??= {})[key] = record;
}

async function runAll(settings: Settings): Promise<Report> {
  const report: Report = { rows: [], markdown: [], phases: {}, engines: {} };
  const selected = PHASES.filter((phase) => settings.phases.includes(phase.name));
  const context = (engine?: EngineContext): PhaseContext => ({
    settings,
    engine,
    resultsDir: RESULTS_DIR,
    note,
  });

  for (const name of settings.engines) {
    const phases = selected.filter((phase) => phase.engines.includes(name));
    if (phases.length === 0) continue;
    let services: Services | undefined;
    let engine: EngineContext;
    if (name === "services") {
      try {
        services = await openServices();
      } catch (error) {
        const reason = `PostgreSQL/Redis not usable: ${(error as Error).message}`;
        note(reason);
        for (const phase of phases) {
          (report.phases[phase.name] ??= {})[name] = { status: "skipped", reason };
        }
        continue;
      }
      CLEANUPS.add(services);
      engine = servicesEngine(services);
      note(`PostgreSQL and Redis: ${services.description}`);
      for (const reason of services.probeNotes) note(`not measured: ${reason}`);
    } else {
      engine = memoryEngine();
    }
    report.engines[name] = {
      description: services?.description ?? "memory engine",
      probeNotes: [...engine.probeNotes],
    };
    try {
      for (const phase of phases) await runPhase(phase, context(engine), report);
    } finally {
      if (services) {
        CLEANUPS.delete(services);
        try {
          await services[Symbol.asyncDispose]();
        } catch (error) {
          note(`could not clean up the services: ${error}`);
        }
      }
    }
  }

  for (const phase of selected) {
    if (phase.engines.length === 0) await runPhase(phase, context(), report);
    else if (!phase.engines.some((name) => settings.engines.includes(name))) {
      const reason = `runs with ${phase.engines.join(" or ")}, not selected (--engines)`;
      note(`${phase.name}: skipped: ${reason}`);
      (report.phases[phase.name] ??= {}).once = { status: "skipped", reason };
    }
  }
  return report;
}

// ---- main -----------------------------------------------------------------------------------

async function main(): Promise<number> {
  let settings: Settings;
  try {
    settings = parseSettings(Deno.args, PHASES);
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(error.message);
      return 0;
    }
    console.error(`${(error as Error).message}\n(deno task bench --help lists the flags)`);
    return 2;
  }
  const startedAt = new Date();
  sampleLoad("start");
  note(
    `${settings.mode} mode: ${settings.runs} runs; phases ${settings.phases.join(", ")}; ` +
      `engines ${settings.engines.join(", ")}; loadavg ${loadAverage().join(" ")}`,
  );
  const orchestratorCpu0 = cpuMs("self");
  const report = await runAll(settings);
  sampleLoad("end");

  const failed = Object.entries(report.phases).flatMap(([phase, byEngine]) =>
    Object.entries(byEngine).filter(([, r]) => r.status === "failed").map(([e]) => `${phase} ${e}`)
  );
  const loads = loadSamples.map((s) => `${s.phase} ${s.loadavg[0].toFixed(2)}`).join(", ");
  const bursts = settings.mode === "full" ? 2 * settings.runs : settings.runs;
  console.log(
    `# deno task bench (${settings.mode}): each figure the median of ${settings.runs} runs ` +
      `(${bursts} for a burst)`,
  );
  console.log(printTable(report.rows));
  for (const table of report.markdown) console.log(`\nFor the README:\n\n${table}`);
  console.log(`\nmachine: ${navigator.hardwareConcurrency} CPUs; load average (1 min) ${loads}`);
  if (failed.length > 0) console.log(`FAILED phases: ${failed.join(", ")} (see the log above)`);
  if (settings.mode === "quick") {
    console.log("quick mode checks the harness with small sizes; take numbers from the full mode");
  }

  const complete = settings.complete && failed.length === 0;
  const result = {
    format: RESULT_FORMAT,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    mode: settings.mode,
    settings,
    machine: {
      cpus: navigator.hardwareConcurrency,
      deno: Deno.version,
      os: Deno.build.os,
      kernel: Deno.osRelease(),
      memoryBytes: Deno.systemMemoryInfo().total,
      loadSamples,
    },
    orchestratorCpuMs: cpuMs("self") - orchestratorCpu0,
    engines: report.engines,
    rows: report.rows,
    phases: report.phases,
  };
  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.toISOString().replaceAll(":", "-").replace(/\..*$/, "");
  const json = JSON.stringify(result, null, 2);
  const name = `${settings.mode}_${stamp}${complete ? "" : "_partial"}.json`;
  await Deno.writeTextFile(`${RESULTS_DIR}/${name}`, json);
  // latest_<mode>.json is the current figure set: only a complete, unprofiled run replaces it.
  if (complete) await Deno.writeTextFile(`${RESULTS_DIR}/latest_${settings.mode}.json`, json);
  console.log(
    `results: bench/results/${name}${complete ? ` (and latest_${settings.mode}.json)` : ""}`,
  );
  return failed.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  let code = 1;
  const interrupted = async () => {
    note("interrupted: stopping every process started");
    await killAllChildren();
    for (const cleanup of CLEANUPS) {
      await within(
        Promise.resolve(cleanup[Symbol.asyncDispose]()).catch(() => {}),
        15_000,
        undefined,
      );
    }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    code = await main();
  } catch (error) {
    console.error(error instanceof Error ? error.stack : error);
  } finally {
    await killAllChildren();
  }
  Deno.exit(code);
}
