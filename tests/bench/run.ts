/**
 * `deno task bench` (SPEC §9): agentsocket against a bare `Deno.upgradeWebSocket` server on the
 * same machine, in one run. Phases:
 *
 * - `burst`: N connections opened at once, each with its own user's `hello`: open → `ready`
 *   (agentsocket) vs open → first echo (bare); server CPU per handshake.
 * - `delivery`: C users each start one run emitting E events as fast as the server can, vs
 *   the bare server pushing the same number of same-sized frames: events/s, latency from the
 *   event's `ts` to receipt, server CPU per event.
 * - `memory`: RSS per idle connection (ready vs open) at N connections after a forced GC, and
 *   memory after churn (users connect, chat and leave) and after the engine's idle sweep.
 * - `scale`: the most concurrent ready connections one process holds with no failure.
 * - `micro`: `deno bench` of the hot paths (`*_bench.ts` in this folder).
 *
 * Memory is measured after a last-resort major GC (`/__bench/gc`, `--expose-gc`), which
 * compacts the heap and gives free pages back, so it shows what is held rather than how far the
 * heap grew while the connections were opened.
 *
 * Burst, delivery and memory run with the memory engine, then with PostgreSQL and Redis
 * (`TEST_DATABASE_URL`, `TEST_REDIS_URL`; a database and a key prefix of its own, removed
 * after). Load comes from separate processes; each figure is the median of several runs,
 * agentsocket and bare interleaved. Prints a table and writes JSON under `bench/results/`.
 *
 * Usage: `deno task bench [--quick] [--runs=N] [--only=burst,delivery,memory,scale,micro]
 * [--engines=memory,services] [--cpu-prof]` (`BENCH_QUICK=1` = `--quick`). Quick mode checks
 * the harness in about a minute (small sizes, memory engine unless `--engines` says
 * otherwise); the full mode takes about a quarter of an hour. `--cpu-prof` writes V8 CPU
 * profiles of the servers to `bench/results/profiles/` (the figures of such a run are slowed
 * by the profiler).
 *
 * @module
 */
import type {
  BurstResult,
  ChurnResult,
  DeliveryResult,
  HoldReport,
  HoldResult,
  Target,
} from "./_load_protocol.ts";
import { BenchServer, Holders, killAllChildren, runLoad, sleep, within } from "./_processes.ts";
import type { MemorySnapshot } from "./_processes.ts";
import { cpuMs, loadAverage } from "./_proc.ts";
import { median, medianOfRuns } from "./_stats.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const RESULTS_DIR = `${ROOT}bench/results`;
const BENCH_DIR = new URL(".", import.meta.url).pathname;

/** The JWT secret every bench server verifies with (HS256, ≥ 32 bytes). */
const BENCH_SECRET = "agentsocket-bench-secret-of-at-least-32-bytes";

const TRANSITION_ROW = "state transition (table check + write + latch), derived";

const PHASES = ["burst", "delivery", "memory", "scale", "micro"] as const;
type Phase = typeof PHASES[number];
type EngineName = "memory" | "services";

interface Settings {
  readonly mode: "quick" | "full";
  readonly runs: number;
  readonly phases: ReadonlySet<Phase>;
  readonly engines: readonly EngineName[];
  readonly cpuProfile: boolean;
  /** Every phase, the default engines, default runs, no profiler: a run that may be quoted. */
  readonly complete: boolean;
  readonly timeoutMs: number;
  /** A burst takes a second or two and is the noisiest figure: it runs twice as many times. */
  readonly burst: { readonly connections: number; readonly warmup: number; readonly runs: number };
  readonly delivery: {
    readonly users: number;
    readonly eventsPerRun: number;
    readonly concurrency: number;
  };
  readonly memory: {
    readonly connections: number;
    readonly runs: number;
    readonly perProcess: number;
    readonly concurrency: number;
    readonly warmup: number;
    readonly churnUsers: number;
    readonly churnConcurrency: number;
    /** Wait for the memory engine's idle sweep after churn (EVENT_RETENTION_SECONDS + 11 s). */
    readonly waitForSweep: boolean;
    readonly retentionSeconds: number;
  };
  readonly scale: {
    readonly steps: readonly number[];
    readonly perProcess: number;
    readonly concurrency: number;
  };
}

function parseSettings(args: readonly string[]): Settings {
  const flags = new Map<string, string>();
  for (const arg of args) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new TypeError(`Cannot parse argument "${arg}": expected --name[=value]`);
    flags.set(match[1], match[2] ?? "true");
  }
  const known = new Set(["quick", "full", "runs", "only", "engines", "cpu-prof"]);
  for (const name of flags.keys()) {
    if (!known.has(name)) throw new TypeError(`Unknown option "--${name}"`);
  }
  const quick = (flags.has("quick") || Deno.env.get("BENCH_QUICK") === "1") &&
    !flags.has("full");
  const list = (name: string, all: readonly string[]) => {
    const raw = flags.get(name);
    if (raw === undefined) return [...all];
    const items = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
    for (const item of items) {
      if (!all.includes(item)) {
        throw new TypeError(`Option "--${name}" has unknown "${item}" (known: ${all.join(", ")})`);
      }
    }
    return items;
  };
  const runs = Number(flags.get("runs") ?? (quick ? 3 : 5));
  if (!Number.isSafeInteger(runs) || runs < 1 || runs > 50) {
    throw new RangeError(`Option "--runs" must be an integer from 1 to 50, received ${runs}`);
  }
  return {
    mode: quick ? "quick" : "full",
    runs,
    phases: new Set(list("only", PHASES) as Phase[]),
    // Quick mode checks the harness in about a minute: the memory engine only, unless asked.
    engines: list("engines", ["memory", "services"]).filter((engine) =>
      !quick || flags.has("engines") || engine === "memory"
    ) as EngineName[],
    cpuProfile: flags.has("cpu-prof"),
    complete: !flags.has("only") && !flags.has("engines") && !flags.has("runs") &&
      !flags.has("cpu-prof"),
    timeoutMs: 30_000,
    burst: quick
      ? { connections: 200, warmup: 100, runs }
      : { connections: 1000, warmup: 300, runs: runs * 2 },
    delivery: quick
      ? { users: 20, eventsPerRun: 250, concurrency: 50 }
      : { users: 100, eventsPerRun: 1000, concurrency: 100 },
    memory: quick
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
      },
    scale: quick ? { steps: [1500], perProcess: 1500, concurrency: 250 } : {
      // Past 19,900 the process nears its 20,000 descriptors: the last steps find the edge.
      steps: [5000, 10_000, 15_000, 19_000, 19_500, 19_900, 19_950, 20_000],
      perProcess: 5000,
      concurrency: 250,
    },
  };
}

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

// ---- phase: burst ---------------------------------------------------------------------------

interface BurstPhase {
  readonly connections: number;
  readonly runs: Record<Target, BurstResult[]>;
  readonly median: Record<Target, BurstResult & { serverCpuPerConnectionMs: number }>;
  readonly failuresTotal: Record<Target, number>;
  readonly raceViolations: number;
  readonly closes1011: number;
}

async function burstPhase(
  settings: Settings,
  env: Record<string, string>,
  tag: string,
): Promise<BurstPhase> {
  const servers = await startPair(settings, env, `burst-${tag}`);
  try {
    const runs: Record<Target, BurstResult[]> = { agentsocket: [], bare: [] };
    let user = 0;
    const burst = async (target: Target, count: number) => {
      const server = servers[target];
      const result = await runLoad<BurstResult>({
        mode: "burst",
        target,
        url: server.wsUrl,
        secret: BENCH_SECRET,
        userPrefix: `burst-${tag}-`,
        firstUser: user,
        count,
        timeoutMs: settings.timeoutMs,
        serverPid: server.pid,
      }, settings.timeoutMs * 4);
      user += count;
      await server.waitIdle();
      return result;
    };
    for (const target of ["agentsocket", "bare"] as const) {
      await burst(target, settings.burst.warmup);
    }
    for (let r = 0; r < settings.burst.runs; r++) {
      for (const target of ["agentsocket", "bare"] as const) {
        const result = await burst(target, settings.burst.connections);
        runs[target].push(result);
        note(
          `burst ${tag} ${target} run ${r + 1}: open→ready p50 ${fmt(result.openToReady.p50)} ` +
            `p99 ${fmt(result.openToReady.p99)} ms, ${result.failed} failed, ` +
            `server CPU ${fmt(result.serverCpuMs)} ms`,
        );
      }
    }
    const med = (target: Target) => {
      const m = medianOfRuns(runs[target]);
      return {
        ...m,
        serverCpuPerConnectionMs: median(runs[target].map((r) => r.serverCpuMs / r.ok)),
      };
    };
    return {
      connections: settings.burst.connections,
      runs,
      median: { agentsocket: med("agentsocket"), bare: med("bare") },
      failuresTotal: {
        agentsocket: runs.agentsocket.reduce((s, r) => s + r.failed, 0),
        bare: runs.bare.reduce((s, r) => s + r.failed, 0),
      },
      raceViolations: await servers.agentsocket.metric("agentsocket_race_violations_total"),
      closes1011: await servers.agentsocket.metric(
        "agentsocket_connection_close_total",
        'code="1011"',
      ),
    };
  } finally {
    await stopPair(servers);
  }
}

// ---- phase: delivery ------------------------------------------------------------------------

interface DeliveryPhase {
  readonly users: number;
  readonly eventsPerRun: number;
  readonly runs: Record<Target, Omit<DeliveryResult, "frameSizes">[]>;
  readonly median: Record<
    Target,
    Omit<DeliveryResult, "frameSizes"> & { serverCpuPerEventUs: number }
  >;
  readonly frameBytes: { readonly min: number; readonly max: number; readonly mean: number };
  readonly failuresTotal: Record<Target, number>;
  readonly raceViolations: number;
  readonly closes1011: number;
}

async function deliveryPhase(
  settings: Settings,
  env: Record<string, string>,
  tag: string,
): Promise<DeliveryPhase> {
  const { users, eventsPerRun, concurrency } = settings.delivery;
  const servers = await startPair(settings, {
    ...env,
    AGENT_STEP_DELAY_MS: "0",
    AGENT_THINKING_STEPS: String(eventsPerRun - 4), // a run emits N + 4 events
  }, `delivery-${tag}`);
  try {
    const runs: Record<Target, DeliveryResult[]> = { agentsocket: [], bare: [] };
    let user = 0;
    let frameSizes: readonly number[] = [];
    const deliver = async (target: Target, count: number) => {
      const server = servers[target];
      const result = await runLoad<DeliveryResult>({
        mode: "delivery",
        target,
        url: server.wsUrl,
        secret: BENCH_SECRET,
        userPrefix: `delivery-${tag}-`,
        firstUser: user,
        count,
        timeoutMs: settings.timeoutMs * 4,
        serverPid: server.pid,
        concurrency,
        frameSizes: target === "bare" ? frameSizes : undefined,
      }, settings.timeoutMs * 10);
      user += count;
      if (target === "agentsocket" && result.frameSizes.length > 0) frameSizes = result.frameSizes;
      await server.waitIdle();
      return result;
    };
    // Warm-up (agentsocket first: its frame sizes are what the bare server pushes).
    for (const target of ["agentsocket", "bare"] as const) {
      await deliver(target, Math.min(10, users));
    }
    for (let r = 0; r < settings.runs; r++) {
      for (const target of ["agentsocket", "bare"] as const) {
        const result = await deliver(target, users);
        runs[target].push(result);
        note(
          `delivery ${tag} ${target} run ${r + 1}: ${fmt(result.eventsPerSecond)} events/s, ` +
            `latency p50 ${fmt(result.latency.p50)} p99 ${fmt(result.latency.p99)} ms, ` +
            `${result.events} events, ${result.failedUsers} failed`,
        );
      }
    }
    const strip = (r: DeliveryResult) => {
      const { frameSizes: _sizes, ...rest } = r;
      return rest;
    };
    const med = (target: Target) => ({
      ...medianOfRuns(runs[target].map(strip)),
      serverCpuPerEventUs: median(runs[target].map((r) => (r.serverCpuMs * 1000) / r.events)),
    });
    const mean = frameSizes.reduce((s, n) => s + n, 0) / Math.max(1, frameSizes.length);
    return {
      users,
      eventsPerRun,
      runs: { agentsocket: runs.agentsocket.map(strip), bare: runs.bare.map(strip) },
      median: { agentsocket: med("agentsocket"), bare: med("bare") },
      frameBytes: { min: Math.min(...frameSizes), max: Math.max(...frameSizes), mean },
      failuresTotal: {
        agentsocket: runs.agentsocket.reduce((s, r) => s + r.failedUsers, 0),
        bare: runs.bare.reduce((s, r) => s + r.failedUsers, 0),
      },
      raceViolations: await servers.agentsocket.metric("agentsocket_race_violations_total"),
      closes1011: await servers.agentsocket.metric(
        "agentsocket_connection_close_total",
        'code="1011"',
      ),
    };
  } finally {
    await stopPair(servers);
  }
}

// ---- phase: memory --------------------------------------------------------------------------

interface MemoryRun {
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

interface ChurnReport {
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

interface MemoryPhase {
  readonly connections: number;
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
  settings: Settings,
  target: Target,
  env: Record<string, string>,
  tag: string,
  withChurn: boolean,
): Promise<MemoryRun> {
  const m = settings.memory;
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
          timeoutMs: settings.timeoutMs,
          concurrency: m.concurrency,
        },
        m.perProcess,
        settings.timeoutMs * 20,
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
    note(
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
        timeoutMs: settings.timeoutMs,
        concurrency: m.churnConcurrency,
      }, settings.timeoutMs * 20);
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
      note(
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

async function memoryPhase(
  settings: Settings,
  env: Record<string, string>,
  tag: string,
): Promise<MemoryPhase> {
  const runs: Record<Target, MemoryRun[]> = { agentsocket: [], bare: [] };
  for (let r = 0; r < settings.memory.runs; r++) {
    for (const target of ["agentsocket", "bare"] as const) {
      runs[target].push(
        await memoryRun(settings, target, env, `${tag}-${r}`, target === "agentsocket" && r === 0),
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
  return {
    connections: settings.memory.connections,
    runs,
    median: { agentsocket: med("agentsocket"), bare: med("bare") },
    churn: runs.agentsocket[0]?.churn,
  };
}

// ---- phase: scale ---------------------------------------------------------------------------

interface ScaleStep {
  readonly target: number;
  readonly ready: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  readonly rampMs: number;
  readonly serverRssKiB: number;
  readonly serverFds: number;
  readonly serverAlive: boolean;
}

interface ScaleResult {
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

async function scaleRun(settings: Settings, target: Target, env: Record<string, string>) {
  const s = settings.scale;
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
          timeoutMs: settings.timeoutMs,
          concurrency: s.concurrency,
        },
        s.perProcess,
        settings.timeoutMs * 40,
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
      note(
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

// ---- phase: micro ---------------------------------------------------------------------------

interface MicroResult {
  readonly name: string;
  readonly group: string | null;
  readonly avgNs: number;
  readonly p75Ns: number;
  readonly p99Ns: number;
  readonly n: number;
}

async function microPhase(): Promise<MicroResult[]> {
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

// ---- servers in pairs -----------------------------------------------------------------------

type Pair = Record<Target, BenchServer>;

async function startPair(
  settings: Settings,
  env: Record<string, string>,
  label: string,
): Promise<Pair> {
  const cpuProfile = settings.cpuProfile
    ? { dir: `${RESULTS_DIR}/profiles`, name: `${label}.cpuprofile` }
    : undefined;
  const agentsocket = await BenchServer.start("agentsocket", { env, cpuProfile });
  try {
    const bare = await BenchServer.start("bare", {
      env,
      cpuProfile: cpuProfile && { ...cpuProfile, name: `${label}-bare.cpuprofile` },
    });
    return { agentsocket, bare };
  } catch (error) {
    await agentsocket.stop();
    throw error;
  }
}

async function stopPair(pair: Pair): Promise<void> {
  await Promise.all([pair.agentsocket.stop(), pair.bare.stop()]);
}

// ---- services -------------------------------------------------------------------------------

/** What must be undone even when the run is interrupted (the database and the key prefix). */
const CLEANUPS = new Set<AsyncDisposable>();

interface ServicesHandle extends AsyncDisposable {
  readonly env: Record<string, string>;
  readonly description: string;
}

async function openServices(): Promise<ServicesHandle> {
  // Loaded only when asked for: the memory-engine phases need no database driver.
  const services = await import("../_helpers/services.ts");
  const database = await within(
    services.createTestDatabase(),
    10_000,
    undefined,
  );
  if (!database) throw new Error("PostgreSQL did not answer within 10 s");
  const redis = services.createTestRedisPrefix();
  try {
    await within(services.deleteRedisPrefix(redis.url, redis.prefix), 10_000, undefined);
  } catch (error) {
    await database[Symbol.asyncDispose]();
    throw error;
  }
  return {
    env: { DATABASE_URL: database.url, REDIS_URL: redis.url, REDIS_KEY_PREFIX: redis.prefix },
    description: `database ${database.name}, Redis prefix ${redis.prefix}`,
    async [Symbol.asyncDispose]() {
      try {
        await redis[Symbol.asyncDispose]();
      } finally {
        await database[Symbol.asyncDispose]();
      }
    },
  };
}

// ---- report ---------------------------------------------------------------------------------

interface Row {
  readonly section: string;
  readonly metric: string;
  readonly agentsocket?: number;
  readonly bare?: number;
  /** agentsocket / bare, or agentsocket - bare when `difference`. */
  readonly ratio?: number;
  readonly difference?: boolean;
  readonly target?: string;
  readonly met?: boolean;
}

function fmt(value: number | undefined | null, digits?: number): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return "—";
  if (digits === undefined && Number.isInteger(value)) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  const d = digits ?? (abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3);
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function pairRow(
  section: string,
  metric: string,
  a: number,
  b: number,
  target?: { text: string; test: (ratio: number) => boolean },
): Row {
  const ratio = a / b;
  return {
    section,
    metric,
    agentsocket: a,
    bare: b,
    ratio,
    target: target?.text,
    met: target ? target.test(ratio) : undefined,
  };
}

function burstRows(section: string, p: BurstPhase): Row[] {
  const a = p.median.agentsocket;
  const b = p.median.bare;
  return [
    pairRow(section, "open→ready p50 (ms)", a.openToReady.p50, b.openToReady.p50),
    pairRow(section, "open→ready p99 (ms)", a.openToReady.p99, b.openToReady.p99, {
      text: "≤ 1.25×",
      test: (r) => r <= 1.25,
    }),
    pairRow(section, "open→ready max (ms)", a.openToReady.max, b.openToReady.max),
    pairRow(section, "connect→ready p99 (ms)", a.connectToReady.p99, b.connectToReady.p99),
    pairRow(section, "connections/s", a.connectionsPerSecond, b.connectionsPerSecond),
    pairRow(
      section,
      "server CPU per handshake (ms)",
      a.serverCpuPerConnectionMs,
      b.serverCpuPerConnectionMs,
      { text: "≤ 2×", test: (r) => r <= 2 },
    ),
    pairRow(section, "load generator CPU per burst (ms)", a.loadCpuMs, b.loadCpuMs),
    {
      section,
      metric: "failures (all runs)",
      agentsocket: p.failuresTotal.agentsocket,
      bare: p.failuresTotal.bare,
      target: "0",
      met: p.failuresTotal.agentsocket === 0,
    },
  ];
}

function deliveryRows(section: string, p: DeliveryPhase): Row[] {
  const a = p.median.agentsocket;
  const b = p.median.bare;
  return [
    pairRow(section, "events/s", a.eventsPerSecond, b.eventsPerSecond, {
      text: "≥ 0.7×",
      test: (r) => r >= 0.7,
    }),
    pairRow(section, "latency p50 (ms, ts→receipt)", a.latency.p50, b.latency.p50),
    pairRow(section, "latency p99 (ms, ts→receipt)", a.latency.p99, b.latency.p99),
    pairRow(section, "server CPU per event (µs)", a.serverCpuPerEventUs, b.serverCpuPerEventUs, {
      text: "≤ 1.5×",
      test: (r) => r <= 1.5,
    }),
    pairRow(section, "load generator CPU per run (ms)", a.loadCpuMs, b.loadCpuMs),
    {
      section,
      metric: "failed users (all runs)",
      agentsocket: p.failuresTotal.agentsocket,
      bare: p.failuresTotal.bare,
      target: "0",
      met: p.failuresTotal.agentsocket === 0,
    },
  ];
}

function memoryRows(section: string, p: MemoryPhase): Row[] {
  const a = p.median.agentsocket;
  const b = p.median.bare;
  const kib = (bytes: number) => bytes / 1024;
  const rows: Row[] = [
    {
      section,
      metric: "RSS per idle connection (KiB)",
      agentsocket: kib(a.rssPerConnectionBytes),
      bare: kib(b.rssPerConnectionBytes),
      ratio: kib(a.rssPerConnectionBytes - b.rssPerConnectionBytes),
      difference: true,
      target: "≤ bare + 6 KB",
      met: a.rssPerConnectionBytes - b.rssPerConnectionBytes <= 6000,
    },
    {
      section,
      metric: "JS heap per idle connection (KiB)",
      agentsocket: kib(a.heapPerConnectionBytes),
      bare: kib(b.heapPerConnectionBytes),
      ratio: kib(a.heapPerConnectionBytes - b.heapPerConnectionBytes),
      difference: true,
    },
    {
      section,
      metric: "ready / open connections held",
      agentsocket: a.ready,
      bare: b.ready,
    },
  ];
  if (p.churn) {
    const c = p.churn;
    rows.push({
      section,
      metric: `heap per churned user after churn (B, ${c.completed}/${c.users} users)`,
      agentsocket: c.heapPerChurnedUserBytes,
    });
    if (c.afterSweep) {
      rows.push({
        section,
        metric: "heap per churned user after the idle sweep (B; the memory store's history)",
        agentsocket: c.heapPerChurnedUserAfterSweepBytes,
      });
      if (c.afterSweep.engineUsers !== undefined) {
        rows.push({
          section,
          metric: "event-engine users held after the sweep",
          agentsocket: c.afterSweep.engineUsers,
          target: "0",
          met: c.afterSweep.engineUsers === 0,
        });
      }
    }
    rows.push({
      section,
      metric: "connections left after churn",
      agentsocket: c.afterChurn.connections,
      target: "0",
      met: c.afterChurn.connections === 0,
    });
  }
  return rows;
}

function scaleRows(section: string, scale: Record<Target, ScaleResult>, top: number): Row[] {
  return [{
    section,
    metric: "concurrent ready connections, no failure",
    agentsocket: scale.agentsocket.maxReadyWithoutFailure,
    bare: scale.bare.maxReadyWithoutFailure,
    ratio: scale.agentsocket.maxReadyWithoutFailure / scale.bare.maxReadyWithoutFailure,
    target: top >= 19_000 ? "≥ 19,000" : `(quick: ${top})`,
    met: top >= 19_000 ? scale.agentsocket.maxReadyWithoutFailure >= 19_000 : undefined,
  }, {
    section,
    metric: `process still running after the last step (1 = yes; ${top} attempted)`,
    agentsocket: scale.agentsocket.serverSurvived ? 1 : 0,
    bare: scale.bare.serverSurvived ? 1 : 0,
  }, {
    section,
    metric: "connections dropped while held",
    agentsocket: scale.agentsocket.dropped,
    bare: scale.bare.dropped,
  }];
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
      agentsocket: ns,
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
      agentsocket: ns,
      target: target.text,
      met: ns <= target.ns,
    });
  }
  return rows;
}

function printTable(rows: readonly Row[]): string {
  const header = ["metric", "agentsocket", "bare", "ratio", "target", ""];
  const lines: string[][] = [];
  let section = "";
  const out: string[] = [];
  const flush = () => {
    if (lines.length === 0) return;
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
    out.push(`\n## ${section}`);
    out.push(header.map((h, i) => h.padEnd(widths[i])).join("  "));
    for (const line of lines) {
      out.push(
        line.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join(
          "  ",
        ),
      );
    }
    lines.length = 0;
  };
  for (const row of rows) {
    if (row.section !== section) {
      flush();
      section = row.section;
    }
    lines.push([
      row.metric,
      fmt(row.agentsocket),
      fmt(row.bare),
      row.ratio === undefined
        ? ""
        : row.difference
        ? `${row.ratio >= 0 ? "+" : ""}${fmt(row.ratio)}`
        : `${fmt(row.ratio, 2)}×`,
      row.target ?? "",
      row.met === undefined ? "" : row.met ? "met" : "MISSED",
    ]);
  }
  flush();
  return out.join("\n");
}

// ---- main -----------------------------------------------------------------------------------

interface EngineResults {
  burst?: BurstPhase;
  delivery?: DeliveryPhase;
  memory?: MemoryPhase;
  skipped?: string;
  services?: string;
}

async function main(): Promise<number> {
  const settings = parseSettings(Deno.args);
  const startedAt = new Date();
  sampleLoad("start");
  note(
    `${settings.mode} mode: ${settings.runs} runs; phases ${[...settings.phases].join(", ")}; ` +
      `engines ${settings.engines.join(", ")}; loadavg ${loadAverage().join(" ")}`,
  );
  const orchestratorCpu0 = cpuMs("self");
  const engines: Partial<Record<EngineName, EngineResults>> = {};
  let scale: Record<Target, ScaleResult> | undefined;
  let micro: MicroResult[] | undefined;
  const rows: Row[] = [];
  const baseEnv = { JWT_SECRET: BENCH_SECRET, AGENT_STEP_DELAY_MS: "0" };

  for (const engine of settings.engines) {
    const engineRuns = ["burst", "delivery", "memory"].some((p) => settings.phases.has(p as Phase));
    if (!engineRuns) break;
    const results: EngineResults = {};
    engines[engine] = results;
    let services: ServicesHandle | undefined;
    if (engine === "services") {
      try {
        services = await openServices();
        CLEANUPS.add(services);
        results.services = services.description;
        note(`PostgreSQL and Redis: ${services.description}`);
      } catch (error) {
        results.skipped = `PostgreSQL/Redis not usable: ${(error as Error).message}`;
        note(results.skipped);
        continue;
      }
    }
    const label = engine === "memory" ? "memory engine" : "PostgreSQL + Redis";
    const env = { ...baseEnv, ...services?.env };
    const tag = engine === "memory" ? "mem" : "svc";
    try {
      if (settings.phases.has("burst")) {
        sampleLoad(`burst ${engine}`);
        results.burst = await burstPhase(settings, env, tag);
        rows.push(
          ...burstRows(
            `handshake burst, ${results.burst.connections} at once (${label})`,
            results.burst,
          ),
        );
      }
      if (settings.phases.has("delivery")) {
        sampleLoad(`delivery ${engine}`);
        results.delivery = await deliveryPhase(settings, env, tag);
        rows.push(
          ...deliveryRows(
            `delivery, ${results.delivery.users} users × ${results.delivery.eventsPerRun} ` +
              `events (${label})`,
            results.delivery,
          ),
        );
      }
      if (settings.phases.has("memory")) {
        sampleLoad(`memory ${engine}`);
        results.memory = await memoryPhase(settings, env, tag);
        rows.push(
          ...memoryRows(
            `memory, ${results.memory.connections} idle connections (${label})`,
            results.memory,
          ),
        );
      }
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

  if (settings.phases.has("scale")) {
    sampleLoad("scale");
    const env = { ...baseEnv };
    scale = {
      agentsocket: await scaleRun(settings, "agentsocket", env),
      bare: await scaleRun(settings, "bare", env),
    };
    const top = settings.scale.steps[settings.scale.steps.length - 1];
    rows.push(...scaleRows("scale, one process (memory engine)", scale, top));
  }

  if (settings.phases.has("micro")) {
    sampleLoad("micro");
    note("micro: deno bench");
    micro = await microPhase();
    rows.push(...microRows(micro));
  }
  sampleLoad("end");

  const table = printTable(rows);
  const loads = loadSamples.map((s) => `${s.phase} ${s.loadavg[0].toFixed(2)}`).join(", ");
  console.log(
    `# agentsocket vs bare Deno.upgradeWebSocket (${settings.mode}): medians of ` +
      `${settings.burst.runs} bursts, ${settings.runs} deliveries, ${settings.memory.runs} memory runs`,
  );
  console.log(table);
  console.log(`\nmachine: ${navigator.hardwareConcurrency} CPUs; load average (1 min) ${loads}`);
  if (settings.mode === "quick") {
    console.log("quick mode checks the harness with small sizes; take numbers from the full mode");
  }

  const result = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    mode: settings.mode,
    settings: { ...settings, phases: [...settings.phases] },
    machine: {
      cpus: navigator.hardwareConcurrency,
      deno: Deno.version,
      os: Deno.build.os,
      kernel: Deno.osRelease(),
      memoryBytes: Deno.systemMemoryInfo().total,
      loadSamples,
    },
    orchestratorCpuMs: cpuMs("self") - orchestratorCpu0,
    rows,
    engines,
    scale,
    micro,
  };
  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.toISOString().replaceAll(":", "-").replace(/\..*$/, "");
  const json = JSON.stringify(result, null, 2);
  const name = `${settings.mode}_${stamp}${settings.complete ? "" : "_partial"}.json`;
  await Deno.writeTextFile(`${RESULTS_DIR}/${name}`, json);
  // latest_<mode>.json is the current figure set: only a complete, unprofiled run replaces it.
  if (settings.complete) {
    await Deno.writeTextFile(`${RESULTS_DIR}/latest_${settings.mode}.json`, json);
  }
  console.log(
    `results: bench/results/${name}${
      settings.complete ? ` (and latest_${settings.mode}.json)` : ""
    }`,
  );
  return 0;
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
