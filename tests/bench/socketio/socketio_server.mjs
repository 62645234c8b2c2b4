// @ts-check
/**
 * The Socket.IO 4.8 server the bench compares agentsocket with (`deno task bench
 * --only=socketio`), doing the delivery phase's work the way a Socket.IO application would:
 *
 * - a JWT (HS256) checked in a `io.use()` middleware with jose, the key imported once as
 *   agentsocket does; the user joins the room `user:<sub>`;
 * - on `chat`, one run: every frame size in `EVENT_SIZES` becomes one `io.to(room).emit("event",
 *   {runId, name, ts, data})`, as fast as it can, yielding to the event loop every 32 events
 *   (agentsocket's run driver does the same); the last event is `agent_completed`;
 * - `SIO_ADAPTER=streams`: `@socket.io/redis-streams-adapter` with connection-state recovery
 *   (every event is XADDed to a Redis stream and carries its offset, so that a client that
 *   reconnects within two minutes gets what it missed); `SIO_ADAPTER=pubsub`:
 *   `@socket.io/redis-adapter` (Redis pub/sub, no recovery).
 *
 * Each event's `[ "event", payload ]` packet is padded so that its text frame (`42[...]`) has
 * the size of agentsocket's frame for the same event; the streams adapter then appends its
 * offset (about 19 bytes), its own price of recovery, as agentsocket's frames carry `seq`.
 *
 * Environment: `HOST`, `PORT`, `REDIS_URL`, `JWT_SECRET`, `SIO_ADAPTER`, `SIO_KEY_PREFIX` (the
 * stream, session keys and channels live under it), `EVENT_SIZES` (a JSON array of frame sizes).
 * It answers `/health/ready` and `/__bench/stats` (open connections) for the bench harness, and
 * exits on SIGTERM or SIGINT. Runs under Node (the default) or Deno.
 *
 * @module
 */
import { createServer } from "node:http";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { Server } from "socket.io";
import { createAdapter as createStreamsAdapter } from "@socket.io/redis-streams-adapter";
import { createAdapter as createPubSubAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { jwtVerify } from "jose";

/** Events emitted before yielding to the event loop (agentsocket's YIELD_EVERY_EVENTS). */
const YIELD_EVERY_EVENTS = 32;
/** How long a disconnected client may come back and recover what it missed. */
const MAX_DISCONNECTION_MS = 120_000;

/** @param {string} name */
function required(name) {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is required`);
  return value;
}

const host = process.env.HOST ?? "127.0.0.1";
const port = Number(required("PORT"));
const adapterName = process.env.SIO_ADAPTER ?? "streams";
const prefix = process.env.SIO_KEY_PREFIX ?? "socket.io";
/** @type {number[]} */
const sizes = JSON.parse(required("EVENT_SIZES"));
if (!Array.isArray(sizes) || sizes.length < 2) throw new Error("EVENT_SIZES: 2 sizes or more");

const key = await crypto.subtle.importKey(
  "raw",
  new TextEncoder().encode(required("JWT_SECRET")),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["verify"],
);

const redis = new Redis(required("REDIS_URL"), { lazyConnect: true });
await redis.connect();
/** @type {Redis[]} */
const redisClients = [redis];

function adapter() {
  if (adapterName === "streams") {
    return createStreamsAdapter(redis, {
      streamName: `${prefix}:stream`,
      sessionKeyPrefix: `${prefix}:session:`,
      channelPrefix: `${prefix}:channel`,
    });
  }
  if (adapterName === "pubsub") {
    const sub = redis.duplicate();
    redisClients.push(sub);
    return createPubSubAdapter(redis, sub, { key: `${prefix}:channel` });
  }
  throw new Error(`SIO_ADAPTER must be streams or pubsub, received "${adapterName}"`);
}

/** @type {Map<number, string>} */
const pads = new Map();
/** @param {number} length */
function pad(length) {
  let text = pads.get(length);
  if (text === undefined) pads.set(length, text = "x".repeat(length));
  return text;
}

const NAMES = ["agent_started", "agent_thinking", "agent_completed"];
/** `42["event",` + payload + `]` with an empty `text`, by event name (the ts is 24 characters). */
const overheads = new Map(NAMES.map((name) => {
  const payload = {
    runId: `run_${crypto.randomUUID()}`,
    name,
    ts: new Date().toISOString(),
    data: { text: "" },
  };
  return [name, `42["event",${JSON.stringify(payload)}]`.length];
}));

/** @param {string} room */
async function run(room) {
  const runId = `run_${crypto.randomUUID()}`;
  const last = sizes.length - 1;
  for (let i = 0; i <= last; i++) {
    const name = i === 0 ? NAMES[0] : i === last ? NAMES[2] : NAMES[1];
    const text = pad(Math.max(0, sizes[i] - (overheads.get(name) ?? 0)));
    io.to(room).emit("event", { runId, name, ts: new Date().toISOString(), data: { text } });
    if ((i + 1) % YIELD_EVERY_EVENTS === 0) await yieldToEventLoop();
  }
}

const http = createServer((request, response) => {
  if (request.url === "/health/ready") {
    response.end("ready");
  } else if (request.url === "/__bench/stats") {
    response.setHeader("content-type", "application/json");
    response.end(JSON.stringify({
      connections: io.engine.clientsCount,
      memory: process.memoryUsage(),
      spaces: {},
      gc: false,
    }));
  } else if (!request.url?.startsWith("/socket.io/")) {
    response.statusCode = 404;
    response.end();
  }
});

const io = new Server(http, {
  serveClient: false,
  adapter: adapter(),
  connectionStateRecovery: adapterName === "streams"
    ? { maxDisconnectionDuration: MAX_DISCONNECTION_MS, skipMiddlewares: true }
    : undefined,
});

io.use(async (socket, next) => {
  try {
    const { payload } = await jwtVerify(String(socket.handshake.auth?.token ?? ""), key, {
      algorithms: ["HS256"],
      requiredClaims: ["sub", "exp"],
      clockTolerance: 5,
    });
    socket.data.userId = payload.sub;
    next();
  } catch {
    next(new Error("unauthorized"));
  }
});

io.on("connection", (socket) => {
  const room = `user:${socket.data.userId}`;
  socket.join(room);
  socket.on("chat", () => void run(room));
});

http.listen(port, host);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  io.close(() => {
    for (const client of redisClients) client.disconnect();
    process.exit(0);
  });
  setTimeout(() => process.exit(0), 5_000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
