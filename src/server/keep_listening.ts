/**
 * Serves HTTP and keeps serving. Deno's server stops for good when `accept` fails (for
 * example "Too many open files" under a connection flood): its `finished` rejects, while the
 * connections it already holds go on. Rather than let that end the process (and drop every
 * held connection), listen again on the same address, backing off until it works.
 *
 * @module
 */
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";

/** Options of {@link keepListening}. */
export interface KeepListeningOptions {
  readonly hostname: string;
  readonly port: number;
  /** Aborting it stops listening; the returned promise then resolves. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Called with the bound address the first time the server listens. */
  readonly onListen?: (address: { hostname: string; port: number }) => void;
}

/** What a handler gets from `Deno.serve`. */
export type ServeHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

/**
 * Serves `handler` until `options.signal` aborts, listening again whenever the server stops on
 * its own.
 *
 * @returns Resolves once the signal aborted and the last server finished.
 */
export async function keepListening(
  options: KeepListeningOptions,
  handler: ServeHandler,
): Promise<void> {
  const { signal, log } = options;
  let port = options.port;
  let announced = false;
  let retryMs = RETRY_MIN_MS;
  while (!signal.aborted) {
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: options.hostname,
        port,
        signal,
        onListen: (address) => {
          port = address.port; // a restart binds the same port, also when 0 was asked
          retryMs = RETRY_MIN_MS;
          if (!announced) options.onListen?.(address);
          else log.warn("listening again", { port });
          announced = true;
        },
      }, handler);
    } catch (error) {
      if (!announced) throw error; // the first bind failing is a start-up error
      log.error("cannot listen again yet", { error: errorMessage(error), retryMs });
      await pause(retryMs, signal);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      continue;
    }
    try {
      await server.finished;
    } catch (error) {
      if (signal.aborted) break;
      log.error("the HTTP server stopped accepting; listening again", {
        error: errorMessage(error),
        retryMs,
      });
      await pause(retryMs, signal);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      continue;
    }
    if (!signal.aborted) {
      log.error("the HTTP server finished on its own; listening again");
      await pause(retryMs, signal);
    }
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
