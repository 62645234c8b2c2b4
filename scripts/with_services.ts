/**
 * Runs a command with PostgreSQL and Redis reachable (SPEC §8), for the integration and e2e
 * tasks:
 *
 * ```sh
 * deno run -A scripts/with_services.ts deno test -A tests/integration
 * ```
 *
 * Reuses TEST_DATABASE_URL / TEST_REDIS_URL when they answer, else brings them up with
 * `docker compose up -d --wait`, else starts throwaway local `postgres` / `redis-server`
 * processes, else exits 1 naming all three ways. The command runs with TEST_DATABASE_URL /
 * TEST_REDIS_URL set to what was found; its output, exit code and SIGINT/SIGTERM pass
 * through, and whatever was started is stopped afterwards, whatever the command's outcome.
 *
 * `--redis-cluster` (before the command) provides a Redis Cluster too, as
 * TEST_REDIS_CLUSTER_URL: the one that variable names when it answers, else a throwaway local
 * cluster of three primaries with one replica each.
 *
 * @module
 */
import { provideServices, ServicesUnavailableError } from "./_services/mod.ts";

const SIGNALS = ["SIGINT", "SIGTERM"] as const satisfies readonly Deno.Signal[];
const SIGNAL_NUMBER: Record<(typeof SIGNALS)[number], number> = { SIGINT: 2, SIGTERM: 15 };

/**
 * Provides the services, runs `argv`, stops what it started.
 *
 * @param argv The command and its arguments.
 * @returns The exit code to leave with: the command's, 1 when there are no services, 2 on
 *   bad usage, 127 when the command does not exist, 128 + n after signal n during setup.
 */
export async function withServices(argv: readonly string[]): Promise<number> {
  const redisCluster = argv[0] === "--redis-cluster";
  if (redisCluster) argv = argv.slice(1);
  if (argv.length === 0) {
    console.error(
      "usage: deno run -A scripts/with_services.ts [--redis-cluster] <command> [args...]",
    );
    return 2;
  }
  const setup = new AbortController();
  let child: Deno.ChildProcess | undefined;
  let received: (typeof SIGNALS)[number] | undefined;
  const handlers = SIGNALS.map((signal) => {
    const handler = () => {
      received ??= signal;
      if (child) child.kill(signal); // the command decides how to end; we clean up after it
      else setup.abort(new Error(`Interrupted by ${signal}`));
    };
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  try {
    let services;
    try {
      services = await provideServices({ signal: setup.signal, redisCluster });
    } catch (error) {
      if (received) return 128 + SIGNAL_NUMBER[received];
      if (error instanceof ServicesUnavailableError) {
        console.error(error.message);
        return 1;
      }
      console.error(`with_services: ${error instanceof Error ? error.message : error}`);
      return 1;
    }
    let code = 1; // unless the command runs and says otherwise
    try {
      console.error(services.summary);
      code = received ? 128 + SIGNAL_NUMBER[received] : await run(argv, services, (c) => {
        child = c;
      });
    } finally {
      child = undefined;
      try {
        await services[Symbol.asyncDispose]();
      } catch (error) {
        console.error(`with_services: could not stop every service: ${errorText(error)}`);
        if (code === 0) code = 1; // a leftover server must not pass unnoticed
      }
    }
    return code;
  } finally {
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  }
}

async function run(
  argv: readonly string[],
  services: { databaseUrl: string; redisUrl: string; redisClusterUrl?: string },
  started: (child: Deno.ChildProcess) => void,
): Promise<number> {
  const [program, ...args] = argv;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args,
      env: {
        TEST_DATABASE_URL: services.databaseUrl,
        TEST_REDIS_URL: services.redisUrl,
        ...(services.redisClusterUrl ? { TEST_REDIS_CLUSTER_URL: services.redisClusterUrl } : {}),
      },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      console.error(`with_services: command not found: ${program}`);
      return 127;
    }
    throw error;
  }
  started(child);
  const status = await child.status;
  // Killed by a signal: report it the shell's way, 128 + its number.
  return status.signal ? 128 + signalNumber(status.signal) : status.code;
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 0;
}

function errorText(error: unknown): string {
  if (error instanceof AggregateError) return error.errors.map(errorText).join("; ");
  return error instanceof Error ? error.message : String(error);
}

if (import.meta.main) Deno.exit(await withServices(Deno.args));
