/**
 * What the benchmark orchestrator (`run.ts`) and its load generator processes
 * (`load_client.ts`) tell each other: the load configuration goes in as the one argument, JSON;
 * progress and results come back as JSON lines on stdout; `release` on stdin ends a hold.
 *
 * @module
 */
import v8 from "node:v8";
import type { Summary } from "./_stats.ts";

/** The server under load: agentsocket, or the bare `Deno.upgradeWebSocket` echo server. */
export type Target = "agentsocket" | "bare";

/**
 * A process whose CPU time a load generator reads at the start and the end of its measured
 * window (`/proc/<pid>/stat`, user + system). `tree` adds the CPU of its direct children, live
 * and exited (the root's `cutime`/`cstime` hold those it has reaped): how a PostgreSQL server is
 * measured, whose postmaster forks one backend per connection.
 */
export interface CpuProbe {
  /** `server` (the process under test), `redis`, `postgres`. */
  readonly name: string;
  readonly pid: number;
  readonly tree: boolean;
}

/** CPU used in the measured window, ms, by probe name (NaN when a process was not readable). */
export type CpuByProbe = Record<string, number>;

/** What every load mode is given. */
export interface LoadCommon {
  readonly target: Target;
  /** `ws://127.0.0.1:<port>/ws`. */
  readonly url: string;
  /** The HS256 secret the server verifies with (tokens are also sent to the bare server). */
  readonly secret: string;
  /** User ids are `<userPrefix><n>` for n in `firstUser … firstUser + count - 1`. */
  readonly userPrefix: string;
  readonly firstUser: number;
  readonly count: number;
  /** Bound on each wait (a handshake, a run, a close), in ms. */
  readonly timeoutMs: number;
}

/** 1,000 (or `count`) connections opened at once, each with its own user's `hello`. */
export interface BurstConfig extends LoadCommon {
  readonly mode: "burst";
  /** The processes whose CPU time is read around the burst (the server's first). */
  readonly probes: readonly CpuProbe[];
}

/**
 * `count` users connect; then every one starts a run at once (agentsocket: a `chat`; bare: a
 * `push` request for `frameSizes.length` frames of those sizes) and receives all its frames.
 */
export interface DeliveryConfig extends LoadCommon {
  readonly mode: "delivery";
  /** The processes whose CPU time is read around the runs (the server's first). */
  readonly probes: readonly CpuProbe[];
  /** Handshakes in flight while connecting. */
  readonly concurrency: number;
  /** Bare only: the sizes of the frames to push, one run's worth (taken from agentsocket). */
  readonly frameSizes?: readonly number[];
}

/** `count` connections opened (at most `concurrency` handshakes in flight) and held idle. */
export interface HoldConfig extends LoadCommon {
  readonly mode: "hold";
  readonly concurrency: number;
}

/** `count` users each connect, chat once, read the whole run and leave. */
export interface ChurnConfig extends LoadCommon {
  readonly mode: "churn";
  readonly concurrency: number;
}

/** How a stream run reaches the model: through agentsocket, or straight to the model server. */
export type StreamVia = "agentsocket" | "direct";

/**
 * The stream phase's workload (`target` is `agentsocket`). `via: "agentsocket"`: `count` users
 * connect, then each sends one `chat` at once; agentsocket (`AGENT=llm`) asks the model server,
 * which streams `pieces` pieces as fast as it is read, and the client reads every event to the
 * run's end. `via: "direct"`: the same number of chat-completion requests go straight to the model
 * server and are read to `[DONE]`: the floor of the measurement chain (one hop fewer, no
 * agentsocket).
 */
export interface StreamConfig extends LoadCommon {
  readonly mode: "stream";
  readonly via: StreamVia;
  /** The model server's root, `http://127.0.0.1:<port>` (its API under `/v1`). */
  readonly modelUrl: string;
  /** Pieces of each reply (the first carries the time it was written). */
  readonly pieces: number;
  /** Handshakes in flight while connecting. */
  readonly concurrency: number;
  /**
   * The runs go one after another instead of all at once: the first piece's latency of a
   * server (and model server) that has nothing else to do.
   */
  readonly sequential: boolean;
  /**
   * Runs started late, through agentsocket, one after another (each once the one before got its
   * first piece, and a pause), from the moment every run started at once has its first piece
   * until they end: the first piece's latency while the server streams, without the burst of
   * starts. Their pieces count with the others'.
   */
  readonly lateRuns: number;
  /** The pause between two late runs, ms. */
  readonly lateGapMs: number;
  /** The processes whose CPU time is read around the runs (the server's first). */
  readonly probes: readonly CpuProbe[];
}

/** Any load configuration. */
export type LoadConfig = BurstConfig | DeliveryConfig | HoldConfig | ChurnConfig | StreamConfig;

/**
 * What `socketio/socketio_load_client.mjs` (Node, socket.io-client) is given: the delivery
 * workload against a Socket.IO server. `count` users connect (each with its own JWT in the
 * handshake's `auth.token`), then each emits one `chat` and receives every `event` up to
 * `agent_completed`. It answers a {@link DeliveryResult} (with `frameSizes` empty).
 */
export interface SocketIoDeliveryConfig {
  readonly mode: "delivery";
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly secret: string;
  readonly userPrefix: string;
  readonly firstUser: number;
  readonly count: number;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly probes: readonly CpuProbe[];
}

/** Failures counted by reason (`close 4429`, `timeout`, `error`, …). */
export type FailureCounts = Record<string, number>;

/** Result of a burst. Times in ms. */
export interface BurstResult {
  readonly mode: "burst";
  readonly ok: number;
  readonly failed: number;
  readonly failures: FailureCounts;
  /**
   * Socket open → `ready` (agentsocket) or → first echo (bare). Every failed or timed-out
   * handshake counts as `timeoutMs`, the worst a client waits: with more than 1% failures p99
   * is the time limit. The same holds for the two summaries below.
   */
  readonly openToReady: Summary;
  /** `new WebSocket()` → socket open (TCP and HTTP upgrade). */
  readonly connectToOpen: Summary;
  /** `new WebSocket()` → `ready` / first echo. */
  readonly connectToReady: Summary;
  /** First `new WebSocket()` → last `ready`. */
  readonly wallMs: number;
  readonly connectionsPerSecond: number;
  /** CPU of each probe (user + system) over the burst. */
  readonly cpuMs: CpuByProbe;
  /** This load process's CPU over the burst. */
  readonly loadCpuMs: number;
}

/** Result of a delivery run. Times in ms. */
export interface DeliveryResult {
  readonly mode: "delivery";
  readonly users: number;
  readonly failedUsers: number;
  readonly failures: FailureCounts;
  readonly events: number;
  readonly bytes: number;
  /** First chat (or push) sent → last run's last event received. */
  readonly wallMs: number;
  readonly eventsPerSecond: number;
  /** Event `ts` (set when the server published it) → receipt here; ms resolution. */
  readonly latency: Summary;
  /** CPU of each probe (user + system) from the first chat sent to the last event received. */
  readonly cpuMs: CpuByProbe;
  readonly loadCpuMs: number;
  /** The sizes of one user's event frames, in order (given to the bare server's push). */
  readonly frameSizes: readonly number[];
}

/** What a hold reports once every connection is ready (or failed). */
export interface HoldReport {
  readonly ready: number;
  readonly failed: number;
  readonly failures: FailureCounts;
  /** Time to open every connection, ms. */
  readonly rampMs: number;
}

/** Result of a hold, after release. */
export interface HoldResult extends HoldReport {
  readonly mode: "hold";
  /** Connections that closed while held (they should not). */
  readonly dropped: number;
  readonly loadCpuMs: number;
}

/** Result of a churn. */
export interface ChurnResult {
  readonly mode: "churn";
  readonly completed: number;
  readonly failed: number;
  readonly failures: FailureCounts;
  readonly wallMs: number;
  readonly loadCpuMs: number;
}

/**
 * How far the load generator's clock is from the model server's, measured before the runs by
 * asking the model server for its time: from the exchange with the shortest round trip,
 * `offsetMs` = the model's reading − the middle of the exchange on the client's clock. The true
 * offset lies within ± `rttMs` / 2 of it. The stamps are compared as they are (both processes
 * read the same kernel clock): this says how far that can be trusted.
 */
export interface ClockCheck {
  readonly offsetMs: number;
  readonly rttMs: number;
}

/** Result of a stream run. Times in ms. */
export interface StreamResult {
  readonly mode: "stream";
  readonly via: StreamVia;
  /** Runs started (chats sent, or requests made), late runs included. */
  readonly runs: number;
  /** Runs that did not end well (no `agent_completed` / no `[DONE]`, or failed to connect). */
  readonly failedRuns: number;
  readonly failures: FailureCounts;
  /** Pieces received: counted in the text of the `agent_delta` events, or in the SSE chunks. */
  readonly pieces: number;
  /** Event frames received (agentsocket), `agent_delta` among them. */
  readonly events: number;
  readonly deltaEvents: number;
  /** Bytes of the frames (agentsocket) or of the response bodies (direct). */
  readonly bytes: number;
  /** First chat (request) sent → last run's end received. */
  readonly wallMs: number;
  readonly piecesPerSecond: number;
  readonly eventsPerSecond: number;
  /**
   * The model server wrote a run's first piece (the time stamped in it) → the client received
   * the first `agent_delta` (direct: the first piece), on the client's clock; see
   * {@link ClockCheck}.
   */
  readonly firstPieceLatency: Summary;
  /** Every run's first-piece latency, in run order (NaN: none arrived), for pooling repeats. */
  readonly firstPieceSamples: readonly number[];
  /** The late runs' first-piece latencies (see {@link StreamConfig.lateRuns}). */
  readonly lateFirstPieceSamples: readonly number[];
  /** Per run: `agent_delta` events a second, over the run (first to last event's `ts`). */
  readonly deltaRate: Summary;
  /** The most `agent_delta` events of one run within any 1,000 ms of their `ts`, over all runs. */
  readonly deltaBusiestSecond: number;
  /**
   * Runs whose terminal `data.text` is exactly their `agent_delta` texts concatenated, and that
   * text exactly the model's reply (direct: runs that received every piece).
   */
  readonly textExact: number;
  /** A few descriptions of runs whose text did not check out. */
  readonly textMismatches: readonly string[];
  readonly clock: ClockCheck;
  /** CPU of each probe (user + system) from the first chat sent to the last run's end. */
  readonly cpuMs: CpuByProbe;
  readonly loadCpuMs: number;
}

/** Any result. */
export type LoadResult = BurstResult | DeliveryResult | HoldResult | ChurnResult | StreamResult;

/** A line a load process prints. */
export type LoadMessage =
  | { readonly type: "holding"; readonly report: HoldReport }
  | { readonly type: "result"; readonly result: LoadResult }
  | { readonly type: "error"; readonly message: string };

/** The V8 heap spaces of this process, for {@link BenchStats.spaces}. */
export function heapSpaces(): Record<string, { size: number; used: number }> {
  const spaces: Record<string, { size: number; used: number }> = {};
  for (const space of v8.getHeapSpaceStatistics()) {
    if (space.space_size > 0) {
      spaces[space.space_name] = { size: space.space_size, used: space.space_used_size };
    }
  }
  return spaces;
}

/** V8's `gc` under `--expose-gc`; recent V8 takes options. */
export type GcFunction = (options?: {
  type?: "major" | "minor";
  execution?: "sync" | "async";
  flavor?: "regular" | "last-resort";
}) => void;

/**
 * The most thorough collection V8 offers: a last-resort major GC compacts the heap and gives
 * its free pages back, so what is measured after it is what is held, not how far the heap grew
 * while the connections were being opened. Falls back to a plain `gc()`.
 */
export function collectAll(gc: GcFunction): void {
  for (let i = 0; i < 2; i++) {
    try {
      gc({ type: "major", execution: "sync", flavor: "last-resort" });
    } catch {
      gc();
    }
  }
}

/** The stdin line that ends a hold. */
export const RELEASE = "release";

/** Paths of the bench-only routes both bench servers answer, to loopback clients only. */
export const BENCH_ROUTES = {
  /** Runs a full garbage collection twice, then answers a {@link BenchStats}. */
  gc: "/__bench/gc",
  /** Answers a {@link BenchStats} without collecting. */
  stats: "/__bench/stats",
} as const;

/** What a bench server says about itself. */
export interface BenchStats {
  /** Open connections (agentsocket: live actors; bare: open sockets). */
  readonly connections: number;
  /** Users whose event log the memory engine holds (agentsocket with the memory engine). */
  readonly engineUsers?: number;
  /** `Deno.memoryUsage()`, bytes. */
  readonly memory: { rss: number; heapTotal: number; heapUsed: number; external: number };
  /** V8 heap spaces (`node:v8` `getHeapSpaceStatistics()`): committed and used bytes. */
  readonly spaces: Record<string, { size: number; used: number }>;
  /** Whether `gc()` was available (the process runs with `--expose-gc`). */
  readonly gc: boolean;
}
