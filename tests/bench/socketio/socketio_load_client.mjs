// @ts-check
/**
 * The load generator of the socketio phase: the delivery workload against a Socket.IO server,
 * with socket.io-client under Node, in a process of its own (never the server's). The bench
 * (`../phases/socketio_phase.ts`) starts it with one argument, a JSON `SocketIoDeliveryConfig`
 * (`../_load_protocol.ts`), and reads one JSON line back: `{"type":"result","result":…}`, a
 * `DeliveryResult`, or `{"type":"error","message":…}`.
 *
 * `count` users connect over WebSocket only (no long-polling first: agentsocket's clients open
 * a WebSocket too), each with its own HS256 token in `auth.token`, at most `concurrency`
 * handshakes in flight. Then every user emits one `chat` at once and receives its run's events
 * up to `agent_completed`. CPU of the probes' processes is read from `/proc` at the first `chat`
 * and after the last event, as `../load_client.ts` does for agentsocket.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { io } from "socket.io-client";

/** How long a token the bench signs lives: longer than any bench run. */
const TOKEN_TTL_SECONDS = 4 * 3600;
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * @typedef {{ name: string, pid: number, tree: boolean }} CpuProbe
 * @typedef {{ url: string, secret: string, userPrefix: string, firstUser: number, count: number,
 *   timeoutMs: number, concurrency: number, probes: CpuProbe[] }} Config
 * @typedef {import("socket.io-client").Socket} ClientSocket
 */

// ---- CPU from /proc (as ../_proc.ts) ---------------------------------------------------------

/** @param {number} pid */
function procStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    ppid: Number(fields[1]),
    own: Number(fields[11]) + Number(fields[12]),
    children: Number(fields[13]) + Number(fields[14]),
  };
}

/** @param {CpuProbe} probe */
function probeCpuMs(probe) {
  const root = procStat(probe.pid);
  if (!root) return NaN;
  if (!probe.tree) return (root.own * 1000) / CLOCK_TICKS_PER_SECOND;
  let ticks = root.own + root.children;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === probe.pid) continue;
    const stat = procStat(Number(name));
    if (stat?.ppid === probe.pid) ticks += stat.own + stat.children;
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** @param {CpuProbe[]} probes */
function readProbes(probes) {
  /** @type {Record<string, number>} */
  const out = {};
  for (const probe of probes) out[probe.name] = probeCpuMs(probe);
  return out;
}

function selfCpuMs() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

// ---- statistics (as ../_stats.ts) -------------------------------------------------------------

/** @param {number[]} values */
function summarize(values) {
  const sorted = Float64Array.from(values).sort();
  const at = (/** @type {number} */ p) =>
    sorted.length === 0
      ? NaN
      : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    p50: at(50),
    p99: at(99),
    max: sorted.length > 0 ? sorted[sorted.length - 1] : NaN,
    mean: sorted.length > 0 ? sum / sorted.length : NaN,
  };
}

// ---- tokens -----------------------------------------------------------------------------------

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  return Buffer.from(bytes).toString("base64url");
}

/**
 * @param {string} secret
 * @param {string[]} users
 */
async function signTokens(secret, users) {
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
  return await Promise.all(users.map(async (sub) => {
    const payload = base64url(
      encoder.encode(JSON.stringify({ sub, iat: now, exp: now + TOKEN_TTL_SECONDS })),
    );
    const input = `${header}.${payload}`;
    const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(input));
    return `${input}.${base64url(new Uint8Array(signature))}`;
  }));
}

// ---- connections ------------------------------------------------------------------------------

/**
 * @param {Config} config
 * @param {string} token
 * @returns {Promise<{ ok: true, socket: ClientSocket } | { ok: false, reason: string }>}
 */
function connect(config, token) {
  const socket = io(config.url, {
    transports: ["websocket"],
    auth: { token },
    reconnection: false,
    forceNew: true,
    timeout: config.timeoutMs,
  });
  return new Promise((resolve) => {
    socket.once("connect", () => resolve({ ok: true, socket }));
    socket.once("connect_error", (error) => {
      socket.close();
      resolve({ ok: false, reason: `connect_error ${error.message}` });
    });
  });
}

/**
 * Runs `task(i)` for i in 0…n-1 with at most `limit` in flight.
 *
 * @template T
 * @param {number} n
 * @param {number} limit
 * @param {(i: number) => Promise<T>} task
 * @returns {Promise<T[]>}
 */
async function pool(n, limit, task) {
  /** @type {T[]} */
  const results = new Array(n);
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

/** @param {Record<string, number>} failures @param {string} reason */
function countFailure(failures, reason) {
  failures[reason] = (failures[reason] ?? 0) + 1;
}

// ---- the workload -----------------------------------------------------------------------------

/** @param {Config} config */
async function delivery(config) {
  const users = Array.from(
    { length: config.count },
    (_, i) => `${config.userPrefix}${config.firstUser + i}`,
  );
  const tokens = await signTokens(config.secret, users);
  const outcomes = await pool(tokens.length, config.concurrency, (i) => connect(config, tokens[i]));
  /** @type {Record<string, number>} */
  const failures = {};
  /** @type {ClientSocket[]} */
  const ready = [];
  for (const outcome of outcomes) {
    if (outcome.ok) ready.push(outcome.socket);
    else countFailure(failures, outcome.reason);
  }

  /** @type {number[]} */
  const latencies = [];
  /** @type {number[]} */
  const frameSizes = [];
  let events = 0;
  let bytes = 0;
  let lastDone = 0;

  const load0 = selfCpuMs();
  const probes0 = readProbes(config.probes);
  const t0 = performance.now();
  const ends = await Promise.all(ready.map((socket, index) =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), config.timeoutMs);
      const done = (/** @type {string | null} */ end) => {
        clearTimeout(timer);
        resolve(end);
      };
      // The engine's text frames ("42[...]" and "2", "3" pings), for the bytes received.
      socket.io.engine.on("data", (data) => {
        const length = typeof data === "string" ? data.length + 1 : 0; // + the "4" message type
        bytes += length;
        if (index === 0 && length > 10) frameSizes.push(length);
      });
      socket.on("event", (event) => {
        events++;
        latencies.push(Date.now() - Date.parse(event.ts));
        if (event.name === "agent_completed") {
          lastDone = performance.now();
          done(null);
        }
      });
      socket.on("disconnect", (reason) => done(`disconnect ${reason}`));
      socket.emit("chat", { id: `bench-${crypto.randomUUID()}`, text: "benchmark message" });
    })
  ));
  const probes = readProbes(config.probes);
  /** @type {Record<string, number>} */
  const cpuMs = {};
  for (const [name, value] of Object.entries(probes0)) cpuMs[name] = probes[name] - value;
  const loadCpuMs = selfCpuMs() - load0;
  for (const end of ends) if (end !== null) countFailure(failures, String(end));
  for (const socket of ready) socket.close();
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
    cpuMs,
    loadCpuMs,
    frameSizes,
  };
}

try {
  /** @type {Config} */
  const config = JSON.parse(process.argv[process.argv.length - 1]);
  const result = await delivery(config);
  process.stdout.write(JSON.stringify({ type: "result", result }) + "\n", () => process.exit(0));
} catch (error) {
  const message = error instanceof Error ? error.stack ?? error.message : String(error);
  process.stdout.write(JSON.stringify({ type: "error", message }) + "\n", () => process.exit(1));
}
