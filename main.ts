/**
 * agentsocket as a program (`deno task start`): a Deno-native WebSocket backend for real-time
 * AI chat. Wiring only: read the configuration from the environment, build the server through
 * the same factory an embedding application uses (`mod.ts`), serve, and drain on SIGTERM or
 * SIGINT.
 *
 * @module
 */
import { ConfigError, loadEnvConfig } from "./src/config/mod.ts";
import { openAgentsocket } from "./src/server/create_agentsocket.ts";
import { keepListening } from "./src/server/keep_listening.ts";
import { StartupError } from "./src/server/startup_error.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = loadEnvConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  let server;
  try {
    server = await openAgentsocket(config);
  } catch (error) {
    if (error instanceof StartupError || error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  const { log } = server;
  const shutdown = new AbortController();
  const listening = Promise.withResolvers<void>();
  const http = keepListening({
    hostname: config.host,
    port: config.port,
    signal: shutdown.signal,
    log,
    onListen: ({ hostname, port }) => {
      log.info("listening", {
        url: `http://${hostname}:${port}`,
        appEnv: config.appEnv,
        store: config.databaseUrl ? "postgres" : "memory",
        engine: config.redisUrl ? "redis" : "memory",
        instanceId: config.instanceId,
      });
      listening.resolve();
    },
  }, server.fetch);
  // A first bind that fails (port in use) is a start-up error: one line, exit 1.
  try {
    await Promise.race([listening.promise, http]);
  } catch (error) {
    console.error(`Cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`);
    await server.close();
    return 1;
  }
  const stopped = Promise.withResolvers<string>();
  let signals = 0;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => {
      // The first signal drains; a second one means "now": exit without waiting for runs.
      if (++signals === 1) stopped.resolve(signal);
      else {
        log.warn("second signal: exiting without finishing the drain", { signal });
        Deno.exit(1);
      }
    });
  }
  let signal: string;
  try {
    await server.start();
    signal = await Promise.race([stopped.promise, server.fatal]);
  } catch (error) {
    if (!(error instanceof StartupError)) throw error;
    console.error(error.message);
    shutdown.abort();
    await http;
    await server.close();
    return 1;
  }
  log.info("shutting down", { signal });
  await server.drain();
  shutdown.abort();
  await http;
  await server.close();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
