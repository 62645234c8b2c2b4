/**
 * The floor the benchmark compares agentsocket with: a bare `Deno.upgradeWebSocket` server that
 * does nothing but answer. It echoes every text frame, and on `{"type":"push","sizes":[…]}`
 * sends one frame per size, each `{"type":"event","seq","ts","pad"}` padded to that size, as
 * fast as it can (yielding to the event loop every 32 frames, as agentsocket's run driver
 * does, so one client's frames do not hold back every other socket).
 *
 * Run by `run.ts` with `PORT` set, on 127.0.0.1 only; `--v8-flags=--expose-gc` enables
 * `/__bench/gc`. Exits on SIGTERM or SIGINT.
 *
 * @module
 */
import { BENCH_ROUTES, collectAll, heapSpaces } from "./_load_protocol.ts";
import type { BenchStats, GcFunction } from "./_load_protocol.ts";

/** Frames pushed before yielding to the event loop (RunOrchestrator's YIELD_EVERY_EVENTS). */
const YIELD_EVERY_FRAMES = 32;

/** Heartbeat, as agentsocket's default `HEARTBEAT_SECONDS`. */
const IDLE_TIMEOUT_SECONDS = 30;

const PUSH_PREFIX = '{"type":"push"';

const sockets = new Set<WebSocket>();
const pads = new Map<number, string>();

function pad(length: number): string {
  let text = pads.get(length);
  if (text === undefined) pads.set(length, text = "x".repeat(length));
  return text;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function push(socket: WebSocket, sizes: readonly number[]): Promise<void> {
  for (let i = 0; i < sizes.length; i++) {
    if (socket.readyState !== WebSocket.OPEN) return;
    const head = `{"type":"event","seq":${i + 1},"ts":"${new Date().toISOString()}","pad":"`;
    socket.send(head + pad(Math.max(0, sizes[i] - head.length - 2)) + '"}');
    if ((i + 1) % YIELD_EVERY_FRAMES === 0) await yieldToEventLoop();
  }
}

function upgrade(request: Request): Response {
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) =>
    s.trim()
  );
  const { socket, response } = Deno.upgradeWebSocket(request, {
    idleTimeout: IDLE_TIMEOUT_SECONDS,
  });
  if (offered.includes("agentsocket.v1")) {
    response.headers.set("sec-websocket-protocol", "agentsocket.v1");
  }
  socket.onopen = () => sockets.add(socket);
  socket.onmessage = (event) => {
    const data = event.data;
    if (typeof data === "string" && data.startsWith(PUSH_PREFIX)) {
      const { sizes } = JSON.parse(data) as { sizes: number[] };
      void push(socket, sizes);
      return;
    }
    socket.send(data);
  };
  socket.onclose = () => sockets.delete(socket);
  socket.onerror = () => {};
  return response;
}

function stats(collect: boolean): BenchStats {
  const gc = (globalThis as { gc?: GcFunction }).gc;
  if (collect && gc) {
    collectAll(gc);
  }
  return {
    connections: sockets.size,
    memory: Deno.memoryUsage(),
    spaces: heapSpaces(),
    gc: gc !== undefined,
  };
}

function isLoopback(info: Deno.ServeHandlerInfo<Deno.NetAddr>): boolean {
  const host = info.remoteAddr.hostname;
  return host === "127.0.0.1" || host === "::1";
}

if (import.meta.main) {
  const port = Number(Deno.env.get("PORT") ?? "8001");
  const shutdown = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    signal: shutdown.signal,
    onListen: () => {},
  }, (request, info) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/ws") return upgrade(request);
    if (pathname === "/health/ready") return new Response("ready");
    if (pathname === BENCH_ROUTES.gc && isLoopback(info)) return Response.json(stats(true));
    if (pathname === BENCH_ROUTES.stats && isLoopback(info)) return Response.json(stats(false));
    return new Response("not found", { status: 404 });
  });
  const stop = () => {
    for (const socket of sockets) socket.close(1001, "Bench server stopping");
    shutdown.abort();
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await server.finished;
  Deno.exit(0);
}
