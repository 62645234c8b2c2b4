/**
 * A benchmark load generator: its own process (never the server's), using Deno's standard
 * `WebSocket` client. `run.ts` starts it with one argument, a JSON {@link LoadConfig}; it
 * prints JSON lines ({@link LoadMessage}) and, in `hold` mode, waits for `release` on stdin.
 *
 * Every wait is bounded by the config's `timeoutMs` (a hold by ten times that).
 *
 * @module
 */
import type {
  BurstConfig,
  BurstResult,
  ChurnConfig,
  ChurnResult,
  DeliveryConfig,
  DeliveryResult,
  FailureCounts,
  HoldConfig,
  HoldReport,
  HoldResult,
  LoadConfig,
  LoadMessage,
  LoadResult,
  StreamConfig,
  StreamResult,
} from "./_load_protocol.ts";
import { RELEASE } from "./_load_protocol.ts";
import { cpuMs, probeDelta, readProbes } from "./_proc.ts";
import { summarize } from "./_stats.ts";
import { streamClock, streamDirect, streamRun } from "./_stream_runs.ts";
import type { StreamRunOutcome } from "./_stream_runs.ts";

const PROTOCOLS = ["agentsocket.v1"];
const READY_PREFIX = '{"type":"ready"';
const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);
/** How long a token the bench signs lives: longer than any bench run. */
const TOKEN_TTL_SECONDS = 4 * 3600;

/** Both servers' event frames start so; `"seq":` (6 characters) follows. */
const EVENT_PREFIX = '{"type":"event",';

/**
 * Reads a top-level string field of an event frame without parsing it all (the load generator
 * shares two cores with the server, so it spends as little as it can per frame). `name` is
 * the first such field (before `data`), `ts` the last (after it).
 */
function stringField(data: string, field: string, last: boolean): string {
  const key = `"${field}":"`;
  const at = last ? data.lastIndexOf(key) : data.indexOf(key);
  if (at < 0) return "";
  const start = at + key.length;
  return data.slice(start, data.indexOf('"', start));
}

// ---- tokens ---------------------------------------------------------------------------------

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Signs one HS256 JWT per user with WebCrypto and a key imported once (jose imports the key on
 * every call, which makes 20,000 tokens slow); the server verifies them with jose.
 */
async function signTokens(secret: string, users: readonly string[]): Promise<string[]> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const header = base64url(encoder.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const now = Math.floor(Date.now() / 1000);
  const tokens: string[] = [];
  for (let i = 0; i < users.length; i += 1000) {
    tokens.push(
      ...await Promise.all(
        users.slice(i, i + 1000).map(async (sub) => {
          const payload = base64url(
            encoder.encode(JSON.stringify({ sub, iat: now, exp: now + TOKEN_TTL_SECONDS })),
          );
          const input = `${header}.${payload}`;
          const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(input));
          return `${input}.${base64url(new Uint8Array(signature))}`;
        }),
      ),
    );
  }
  return tokens;
}

function usersOf(config: LoadConfig): string[] {
  return Array.from(
    { length: config.count },
    (_, i) => `${config.userPrefix}${config.firstUser + i}`,
  );
}

async function hellosOf(config: LoadConfig): Promise<string[]> {
  const tokens = await signTokens(config.secret, usersOf(config));
  return tokens.map((token) => JSON.stringify({ type: "hello", token }));
}

// ---- one connection -------------------------------------------------------------------------

interface Connected {
  readonly ok: true;
  readonly ws: WebSocket;
  readonly tCreate: number;
  readonly tOpen: number;
  readonly tReady: number;
  /** Resolves when the socket closes. */
  readonly closed: Promise<CloseEvent>;
}

interface Failed {
  readonly ok: false;
  readonly reason: string;
}

/**
 * Opens a socket, sends `hello` once open, and resolves at the first frame: `ready`
 * (agentsocket) or the echo of the hello (bare). Anything else, a close first, or no answer
 * within `timeoutMs`, is a failure.
 */
function connect(config: LoadConfig, hello: string): Promise<Connected | Failed> {
  const tCreate = performance.now();
  let ws: WebSocket;
  try {
    ws = new WebSocket(config.url, PROTOCOLS);
  } catch (error) {
    return Promise.resolve({ ok: false, reason: `constructor: ${(error as Error).name}` });
  }
  const closed = Promise.withResolvers<CloseEvent>();
  return new Promise((resolve) => {
    let tOpen = NaN;
    let settled = false;
    const settle = (outcome: Connected | Failed) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      settle({ ok: false, reason: Number.isNaN(tOpen) ? "timeout before open" : "timeout" });
      try {
        ws.close();
      } catch {
        // not open yet
      }
    }, config.timeoutMs);
    ws.onopen = () => {
      tOpen = performance.now();
      ws.send(hello);
    };
    ws.onmessage = (event) => {
      const tReady = performance.now();
      ws.onmessage = null;
      const good = config.target === "bare"
        ? event.data === hello
        : typeof event.data === "string" && event.data.startsWith(READY_PREFIX);
      if (good) settle({ ok: true, ws, tCreate, tOpen, tReady, closed: closed.promise });
      else {
        settle({ ok: false, reason: `first frame ${String(event.data).slice(0, 40)}` });
        ws.close();
      }
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      closed.resolve(event);
      settle({ ok: false, reason: `close ${event.code}` });
    };
  });
}

/** Runs `task(i)` for i in 0…n-1 with at most `limit` in flight. */
async function pool<T>(n: number, limit: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return results;
}

function countFailure(failures: FailureCounts, reason: string): void {
  failures[reason] = (failures[reason] ?? 0) + 1;
}

/** Closes every socket (1000) and waits for their close events, within `timeoutMs`. */
async function closeAll(connections: readonly Connected[], timeoutMs: number): Promise<void> {
  for (const c of connections) {
    try {
      if (c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
    } catch {
      // already closing
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(connections.map((c) => c.closed)),
    new Promise((resolve) => timer = setTimeout(resolve, timeoutMs)),
  ]);
  clearTimeout(timer);
}

/** Resolves with a promise's value, or `fallback` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise,
    new Promise<T>((resolve) => timer = setTimeout(() => resolve(fallback), ms)),
  ]);
  clearTimeout(timer);
  return result;
}

// ---- modes ----------------------------------------------------------------------------------

async function burst(config: BurstConfig): Promise<BurstResult> {
  const hellos = await hellosOf(config);
  const load0 = cpuMs("self");
  const probes0 = readProbes(config.probes);
  const t0 = performance.now();
  const outcomes = await Promise.all(hellos.map((hello) => connect(config, hello)));
  const ok = outcomes.filter((o): o is Connected => o.ok);
  const lastReady = Math.max(t0, ...ok.map((o) => o.tReady));
  const probes = probeDelta(probes0, readProbes(config.probes));
  const loadCpuMs = cpuMs("self") - load0;
  const failures: FailureCounts = {};
  for (const o of outcomes) if (!o.ok) countFailure(failures, o.reason);
  await closeAll(ok, config.timeoutMs);
  const wallMs = lastReady - t0;
  // A failed or timed-out handshake counts as the time limit: the worst a client waits.
  const asWorst = { failures: outcomes.length - ok.length, worst: config.timeoutMs };
  return {
    mode: "burst",
    ok: ok.length,
    failed: outcomes.length - ok.length,
    failures,
    openToReady: summarize(ok.map((o) => o.tReady - o.tOpen), asWorst),
    connectToOpen: summarize(ok.map((o) => o.tOpen - o.tCreate), asWorst),
    connectToReady: summarize(ok.map((o) => o.tReady - o.tCreate), asWorst),
    wallMs,
    connectionsPerSecond: wallMs > 0 ? ok.length / (wallMs / 1000) : NaN,
    cpuMs: probes,
    loadCpuMs,
  };
}

async function delivery(config: DeliveryConfig): Promise<DeliveryResult> {
  const hellos = await hellosOf(config);
  const outcomes = await pool(
    hellos.length,
    config.concurrency,
    (i) => connect(config, hellos[i]),
  );
  const failures: FailureCounts = {};
  for (const o of outcomes) if (!o.ok) countFailure(failures, o.reason);
  const ready = outcomes.filter((o): o is Connected => o.ok);

  const latencies: number[] = [];
  const frameSizes: number[] = [];
  let events = 0;
  let bytes = 0;
  let lastDone = 0;
  const bare = config.target === "bare";
  const sizes = config.frameSizes ?? [];
  const push = JSON.stringify({ type: "push", sizes });

  const load0 = cpuMs("self");
  const probes0 = readProbes(config.probes);
  const t0 = performance.now();
  const runs = ready.map((c, index) => {
    const done = Promise.withResolvers<string | null>();
    c.ws.onmessage = (event) => {
      const data = event.data as string;
      const received = Date.now();
      if (data.startsWith(EVENT_PREFIX)) {
        events++;
        bytes += data.length;
        latencies.push(received - Date.parse(stringField(data, "ts", true)));
        if (index === 0) frameSizes.push(data.length);
        const last = bare
          ? Number(data.slice(EVENT_PREFIX.length + 6, data.indexOf(",", EVENT_PREFIX.length))) ===
            sizes.length
          : TERMINAL.has(stringField(data, "name", false));
        if (last) {
          lastDone = performance.now();
          done.resolve(null);
        }
      } else {
        const frame = JSON.parse(data);
        if (frame.type === "error") done.resolve(`error ${frame.code}`);
      }
    };
    c.closed.then((event) => done.resolve(`close ${event.code}`));
    c.ws.send(
      bare ? push : JSON.stringify({
        type: "chat",
        id: `bench-${crypto.randomUUID()}`,
        text: "benchmark message",
      }),
    );
    return within(done.promise, config.timeoutMs, "timeout");
  });
  const ends = await Promise.all(runs);
  const probes = probeDelta(probes0, readProbes(config.probes));
  const loadCpuMs = cpuMs("self") - load0;
  for (const end of ends) if (end !== null) countFailure(failures, end);
  await closeAll(ready, config.timeoutMs);
  const wallMs = lastDone - t0;
  return {
    mode: "delivery",
    users: ready.length,
    failedUsers: outcomes.length - ends.filter((e) => e === null).length,
    failures,
    events,
    bytes,
    wallMs,
    eventsPerSecond: wallMs > 0 ? events / (wallMs / 1000) : NaN,
    latency: summarize(latencies),
    cpuMs: probes,
    loadCpuMs,
    frameSizes,
  };
}

async function hold(config: HoldConfig): Promise<HoldResult> {
  const hellos = await hellosOf(config);
  const load0 = cpuMs("self");
  const t0 = performance.now();
  const outcomes = await pool(
    hellos.length,
    config.concurrency,
    (i) => connect(config, hellos[i]),
  );
  const rampMs = performance.now() - t0;
  const failures: FailureCounts = {};
  for (const o of outcomes) if (!o.ok) countFailure(failures, o.reason);
  const ready = outcomes.filter((o): o is Connected => o.ok);
  let dropped = 0;
  for (const c of ready) c.closed.then(() => dropped++);
  const report: HoldReport = {
    ready: ready.length,
    failed: outcomes.length - ready.length,
    failures,
    rampMs,
  };
  emit({ type: "holding", report });
  await waitForRelease(config.timeoutMs * 10);
  const droppedWhileHeld = dropped;
  await closeAll(ready, config.timeoutMs);
  return {
    mode: "hold",
    ...report,
    dropped: droppedWhileHeld,
    loadCpuMs: cpuMs("self") - load0,
  };
}

async function churn(config: ChurnConfig): Promise<ChurnResult> {
  const hellos = await hellosOf(config);
  const failures: FailureCounts = {};
  const load0 = cpuMs("self");
  const t0 = performance.now();
  const ends = await pool(hellos.length, config.concurrency, async (i) => {
    const c = await connect(config, hellos[i]);
    if (!c.ok) return c.reason;
    const done = Promise.withResolvers<string | null>();
    c.ws.onmessage = (event) => {
      const frame = JSON.parse(event.data as string);
      if (frame.type === "event" && TERMINAL.has(frame.name)) done.resolve(null);
      else if (frame.type === "error") done.resolve(`error ${frame.code}`);
    };
    c.closed.then((event) => done.resolve(`close ${event.code}`));
    c.ws.send(JSON.stringify({ type: "chat", id: `churn-${i}`, text: "benchmark message" }));
    const end = await within(done.promise, config.timeoutMs, "timeout");
    await closeAll([c], config.timeoutMs);
    return end;
  });
  for (const end of ends) if (end !== null) countFailure(failures, end);
  const failed = ends.filter((e) => e !== null).length;
  return {
    mode: "churn",
    completed: ends.length - failed,
    failed,
    failures,
    wallMs: performance.now() - t0,
    loadCpuMs: cpuMs("self") - load0,
  };
}

async function stream(config: StreamConfig): Promise<StreamResult> {
  const clock = await streamClock(config.modelUrl);
  const viaAgentsocket = config.via === "agentsocket";
  const late = viaAgentsocket && !config.sequential ? config.lateRuns : 0;
  let connections: Connected[] = [];
  const failures: FailureCounts = {};
  if (viaAgentsocket) {
    const hellos = await hellosOf({ ...config, count: config.count + late });
    const outcomes = await pool(
      hellos.length,
      config.concurrency,
      (i) => connect(config, hellos[i]),
    );
    for (const o of outcomes) if (!o.ok) countFailure(failures, o.reason);
    connections = outcomes.filter((o): o is Connected => o.ok);
  }

  const load0 = cpuMs("self");
  const probes0 = readProbes(config.probes);
  const t0 = performance.now();
  const runOne = (i: number, onFirstPiece?: () => void): Promise<StreamRunOutcome> =>
    viaAgentsocket
      ? streamRun(connections[i].ws, connections[i].closed, {
        id: `stream-${config.firstUser + i}`,
        pieces: config.pieces,
        timeoutMs: config.timeoutMs,
        onFirstPiece,
      })
      : streamDirect(config.modelUrl, { pieces: config.pieces, timeoutMs: config.timeoutMs });
  const count = viaAgentsocket ? Math.min(config.count, connections.length) : config.count;
  const lateCount = viaAgentsocket ? connections.length - count : 0;
  const outcomes: StreamRunOutcome[] = [];
  const lateOutcomes: StreamRunOutcome[] = [];
  if (config.sequential) {
    for (let i = 0; i < count; i++) outcomes.push(await runOne(i));
  } else {
    let waiting = count;
    const allStarted = Promise.withResolvers<void>();
    if (count === 0) allStarted.resolve();
    const started = () => {
      if (--waiting === 0) allStarted.resolve();
    };
    let mainEnded = false;
    const main = Promise.all(
      Array.from({ length: count }, (_, i) => runOne(i, once(started))),
    ).finally(() => mainEnded = true);
    const lateRuns = (async () => {
      await Promise.race([allStarted.promise, main]);
      const runs: Promise<StreamRunOutcome>[] = [];
      for (let j = 0; j < lateCount && !mainEnded; j++) {
        const first = Promise.withResolvers<void>();
        const run = runOne(count + j, first.resolve);
        runs.push(run);
        await Promise.race([first.promise, run]);
        await new Promise((resolve) => setTimeout(resolve, config.lateGapMs));
      }
      return await Promise.all(runs);
    })();
    outcomes.push(...await main);
    lateOutcomes.push(...await lateRuns);
  }
  const probes = probeDelta(probes0, readProbes(config.probes));
  const loadCpuMs = cpuMs("self") - load0;
  await closeAll(connections, config.timeoutMs);

  const ended = [...outcomes, ...lateOutcomes].map((o) => o.endedAt).filter((t) =>
    Number.isFinite(t)
  );
  const wallMs = (ended.length > 0 ? Math.max(...ended) : performance.now()) - t0;
  const mismatches: string[] = [];
  let pieces = 0, events = 0, deltaEvents = 0, bytes = 0, textExact = 0, failed = 0;
  for (const o of [...outcomes, ...lateOutcomes]) {
    pieces += o.pieces;
    events += o.events;
    deltaEvents += o.deltaEvents;
    bytes += o.bytes;
    if (o.failure !== undefined) {
      failed++;
      countFailure(failures, o.failure);
    }
    if (o.textMismatch === undefined) textExact++;
    else if (mismatches.length < 3) mismatches.push(o.textMismatch);
  }
  const perSecond = (n: number) => wallMs > 0 ? n / (wallMs / 1000) : NaN;
  // Late runs not started because the others had ended are no failures.
  const notConnected = viaAgentsocket ? config.count + late - connections.length : 0;
  return {
    mode: "stream",
    via: config.via,
    runs: outcomes.length + lateOutcomes.length,
    failedRuns: failed + notConnected,
    failures,
    pieces,
    events,
    deltaEvents,
    bytes,
    wallMs,
    piecesPerSecond: perSecond(pieces),
    eventsPerSecond: perSecond(events),
    // A run that never got its first piece counts as the time limit.
    firstPieceLatency: summarize(
      outcomes.map((o) => o.firstPieceMs).filter((ms) => Number.isFinite(ms)),
      {
        failures: outcomes.filter((o) => !Number.isFinite(o.firstPieceMs)).length +
          config.count - count,
        worst: config.timeoutMs,
      },
    ),
    firstPieceSamples: outcomes.map((o) => o.firstPieceMs),
    lateFirstPieceSamples: lateOutcomes.map((o) => o.firstPieceMs),
    deltaRate: summarize(
      [...outcomes, ...lateOutcomes].map((o) => o.deltaRate).filter((r) => Number.isFinite(r)),
    ),
    deltaBusiestSecond: Math.max(
      0,
      ...[...outcomes, ...lateOutcomes].map((o) => o.deltaBusiestSecond),
    ),
    textExact,
    textMismatches: mismatches,
    clock,
    cpuMs: probes,
    loadCpuMs,
  };
}

/** `fn`, callable once: later calls do nothing. */
function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}

// ---- process --------------------------------------------------------------------------------

function emit(message: LoadMessage): void {
  console.log(JSON.stringify(message));
}

/** Resolves when `release` arrives on stdin, stdin ends, or `timeoutMs` passes. */
async function waitForRelease(timeoutMs: number): Promise<void> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + timeoutMs;
  let buffered = "";
  try {
    while (Date.now() < deadline) {
      const chunk = await within(reader.read(), deadline - Date.now(), undefined);
      if (chunk === undefined || chunk.done) return;
      buffered += chunk.value;
      if (buffered.split("\n").some((line) => line.trim() === RELEASE)) return;
    }
  } finally {
    reader.releaseLock();
  }
}

async function main(): Promise<number> {
  const config = JSON.parse(Deno.args[0]) as LoadConfig;
  let result: LoadResult;
  switch (config.mode) {
    case "burst":
      result = await burst(config);
      break;
    case "delivery":
      result = await delivery(config);
      break;
    case "hold":
      result = await hold(config);
      break;
    case "churn":
      result = await churn(config);
      break;
    case "stream":
      result = await stream(config);
      break;
  }
  emit({ type: "result", result });
  return 0;
}

if (import.meta.main) {
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    emit({ type: "error", message: String((error as Error).stack ?? error) });
  }
  Deno.exit(code);
}
