/**
 * agentsocket as the benchmark runs it: the same `loadEnvConfig()` → `buildServer()` →
 * `keepListening()` wiring as `main.ts`, plus two bench-only routes answered here, in front of the
 * server, to loopback clients only: `/__bench/gc` (a forced full GC, then memory figures; needs
 * `--v8-flags=--expose-gc`) and `/__bench/stats`. No production file knows about them.
 *
 * With the memory engine (no `REDIS_URL`) the engine is made here, exactly as `buildServer`
 * would make it, and passed in, so the stats can say how many users' logs it still holds.
 *
 * @module
 */
import { systemClock } from "../../src/_util/clock.ts";
import { createLogger } from "../../src/_util/log.ts";
import { MemoryEngine } from "../../src/bus/memory_engine.ts";
import { loadEnvConfig } from "../../src/config/mod.ts";
import { buildServer } from "../../src/server/build_server.ts";
import { keepListening } from "../../src/server/keep_listening.ts";
import { BENCH_ROUTES, collectAll, heapSpaces } from "./_load_protocol.ts";
import type { BenchStats, GcFunction } from "./_load_protocol.ts";

async function main(): Promise<number> {
  const config = loadEnvConfig();
  const log = createLogger(config.logLevel);
  const engine = config.redisUrl
    ? undefined
    : new MemoryEngine({ clock: systemClock, log, retention: config.retention });
  const server = await buildServer(config, { log, engine });

  const stats = (collect: boolean): BenchStats => {
    const gc = (globalThis as { gc?: GcFunction }).gc;
    if (collect && gc) {
      collectAll(gc);
    }
    return {
      connections: server.registry.size,
      engineUsers: engine?.userCount,
      memory: Deno.memoryUsage(),
      spaces: heapSpaces(),
      gc: gc !== undefined,
    };
  };

  const shutdown = new AbortController();
  const listening = Promise.withResolvers<void>();
  const http = keepListening(
    {
      hostname: config.host,
      port: config.port,
      signal: shutdown.signal,
      log,
      onListen: () => listening.resolve(),
    },
    (request, info) => {
      const host = info.remoteAddr.hostname;
      if (host === "127.0.0.1" || host === "::1") {
        const { pathname } = new URL(request.url);
        if (pathname === BENCH_ROUTES.gc) return Response.json(stats(true));
        if (pathname === BENCH_ROUTES.stats) return Response.json(stats(false));
      }
      return server.fetch(request, info);
    },
  );
  await Promise.race([listening.promise, http]);
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  await Promise.race([server.start(), server.fatal]);
  await Promise.race([stopped.promise, server.fatal]);
  // The bench closes its clients first; whatever is left is closed 1012 by close().
  shutdown.abort();
  await server.close();
  await http;
  return 0;
}

if (import.meta.main) Deno.exit(await main());
