/**
 * SPEC §8: make sure PostgreSQL and Redis are reachable before the integration and e2e
 * suites. In order, for each service: reuse TEST_DATABASE_URL / TEST_REDIS_URL when it
 * answers; else `docker compose up -d --wait` when a Docker engine runs; else a throwaway
 * local server when the binaries are installed; else fail naming all three ways.
 *
 * @module
 */
import { findPostgresBinaries, findRedisServer } from "./binaries.ts";
import {
  composePorts,
  ComposeProject,
  type ComposeService,
  composeUrl,
  dockerEngineAvailable,
} from "./compose.ts";
import { pollUntil } from "./poll.ts";
import {
  describeEndpoint,
  probePostgres,
  probeRedis,
  type ProbeResult,
  redisCommands,
} from "./probe.ts";
import { startThrowawayPostgres } from "./throwaway_postgres.ts";
import { startThrowawayRedis } from "./throwaway_redis.ts";
import { startThrowawayRedisCluster } from "./throwaway_redis_cluster.ts";

/** SPEC §8 default of TEST_DATABASE_URL. */
export const DEFAULT_TEST_DATABASE_URL = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
/** SPEC §8 default of TEST_REDIS_URL. */
export const DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379";

/** Where a service came from. */
export type ServiceSource = "reused" | "docker compose" | "throwaway";

/** The services to test against; disposing stops whatever was started for them. */
export interface ProvidedServices extends AsyncDisposable {
  /** For TEST_DATABASE_URL. */
  readonly databaseUrl: string;
  /** For TEST_REDIS_URL. */
  readonly redisUrl: string;
  /** For TEST_REDIS_CLUSTER_URL (`redis+cluster://…`), when a cluster was asked for. */
  readonly redisClusterUrl?: string;
  /** One short line naming what is used, e.g. `PostgreSQL 127.0.0.1:5432 (reused), …`. */
  readonly summary: string;
}

/** Neither reachable, nor Docker, nor binaries: the message names all three ways. */
export class ServicesUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ServicesUnavailableError";
  }
}

/** Options of {@link provideServices}. */
export interface ProvideServicesOptions {
  /** Aborts starting throwaway servers (SIGINT during setup). */
  signal?: AbortSignal;
  /** Where notes on the way go (a failed compose up, say). */
  log?: (line: string) => void;
  /**
   * Provide a Redis Cluster too: TEST_REDIS_CLUSTER_URL when it answers, else a throwaway local
   * one (three primaries, one replica each) from `redis-server` and `redis-cli`.
   */
  redisCluster?: boolean;
}

const SERVICES = ["postgres", "redis"] as const satisfies readonly ComposeService[];
const LABEL: Record<ComposeService, string> = { postgres: "PostgreSQL", redis: "Redis" };
const ENV_NAME: Record<ComposeService, string> = {
  postgres: "TEST_DATABASE_URL",
  redis: "TEST_REDIS_URL",
};
const PROBE_TIMEOUT_MS = 3_000;

interface Found {
  url: string;
  source: ServiceSource;
}

/**
 * Finds or starts PostgreSQL and Redis (see the module doc for the order).
 *
 * @throws {ServicesUnavailableError} when a service can be had in none of the three ways.
 */
export async function provideServices(
  options: ProvideServicesOptions = {},
): Promise<ProvidedServices> {
  const log = options.log ?? ((line: string) => console.error(line));
  const wanted: Record<ComposeService, string> = {
    postgres: Deno.env.get("TEST_DATABASE_URL") || DEFAULT_TEST_DATABASE_URL,
    redis: Deno.env.get("TEST_REDIS_URL") || DEFAULT_TEST_REDIS_URL,
  };
  const found: Partial<Record<ComposeService, Found>> = {};
  const reasons: Partial<Record<ComposeService, string>> = {};
  const cleanups: (() => Promise<void>)[] = [];
  const dispose = async () => {
    const errors: unknown[] = [];
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((error) => errors.push(error));
    }
    if (errors.length > 0) throw new AggregateError(errors, "Could not stop every service");
  };

  try {
    // 1. Reuse what answers.
    const probes = await Promise.all(SERVICES.map((s) => probe(s, wanted[s], PROBE_TIMEOUT_MS)));
    SERVICES.forEach((service, i) => {
      const result = probes[i];
      if (result.ok) found[service] = { url: wanted[service], source: "reused" };
      else {
        reasons[service] = `${ENV_NAME[service]} at ${
          describeEndpoint(wanted[service])
        }: ${result.reason}`;
      }
    });

    // 2. Docker Compose, when an engine runs.
    let missing = SERVICES.filter((s) => !found[s]);
    let dockerNote = "";
    if (missing.length > 0) {
      if (await dockerEngineAvailable()) {
        await composeUp(missing, { found, reasons, cleanups, log });
      } else dockerNote = "no Docker engine";
    }

    // 3. Throwaway local servers, when every missing one can be had that way.
    missing = SERVICES.filter((s) => !found[s]);
    if (missing.length > 0) {
      const lacking: string[] = [];
      if (missing.includes("postgres") && !await findPostgresBinaries()) {
        lacking.push("postgres/initdb not found");
      }
      if (missing.includes("redis") && !await findRedisServer()) {
        lacking.push("redis-server not found");
      }
      if (lacking.length > 0) {
        throw unavailable(missing, reasons, [dockerNote, ...lacking].filter(Boolean));
      }
      const started = await Promise.allSettled(missing.map(async (service) => {
        const server = service === "postgres"
          ? await startThrowawayPostgres({ signal: options.signal })
          : await startThrowawayRedis({ signal: options.signal });
        cleanups.push(async () => await server[Symbol.asyncDispose]());
        found[service] = { url: server.url, source: "throwaway" };
      }));
      const failure = started.find((r) => r.status === "rejected");
      if (failure) throw failure.reason;
    }

    const postgres = found.postgres!;
    const redis = found.redis!;
    const cluster = options.redisCluster
      ? await provideRedisCluster({ cleanups, signal: options.signal })
      : undefined;
    return {
      databaseUrl: postgres.url,
      redisUrl: redis.url,
      redisClusterUrl: cluster?.url,
      summary:
        `with_services: ${LABEL.postgres} ${
          describeEndpoint(postgres.url)
        } (${postgres.source}), ${LABEL.redis} ${describeEndpoint(redis.url)} (${redis.source})` +
        (cluster ? `, Redis Cluster ${cluster.url} (${cluster.source})` : ""),
      [Symbol.asyncDispose]: dispose,
    };
  } catch (error) {
    await dispose().catch((cleanupError) => log(`with_services: cleanup failed: ${cleanupError}`));
    throw error;
  }
}

/**
 * TEST_REDIS_CLUSTER_URL when its first node says the cluster is `ok`, else a throwaway local
 * cluster (stopped by the cleanups).
 *
 * @throws {ServicesUnavailableError} when neither can be had.
 */
async function provideRedisCluster(
  state: { cleanups: (() => Promise<void>)[]; signal?: AbortSignal },
): Promise<Found> {
  const wanted = Deno.env.get("TEST_REDIS_CLUSTER_URL");
  let reason = "TEST_REDIS_CLUSTER_URL is not set";
  if (wanted) {
    const first = /^rediss?\+cluster:\/\/(?:[^@/]*@)?([^,/?#]+)/i.exec(wanted)?.[1];
    try {
      if (!first) throw new Error("expected redis+cluster://host:port,…");
      const [info] = await redisCommands(`redis://${first}`, [["CLUSTER", "INFO"]], {
        timeoutMs: PROBE_TIMEOUT_MS,
      });
      if (typeof info === "string" && info.includes("cluster_state:ok")) {
        return { url: wanted, source: "reused" };
      }
      reason = `TEST_REDIS_CLUSTER_URL at ${first}: the cluster is not ok`;
    } catch (error) {
      reason = `TEST_REDIS_CLUSTER_URL at ${first ?? wanted}: ${
        error instanceof Error ? error.message : error
      }`;
    }
  }
  try {
    const cluster = await startThrowawayRedisCluster({ signal: state.signal });
    state.cleanups.push(async () => await cluster[Symbol.asyncDispose]());
    return { url: cluster.url, source: "throwaway" };
  } catch (error) {
    throw new ServicesUnavailableError(
      `with_services: cannot provide a Redis Cluster for the tests (${reason}; ${
        error instanceof Error ? error.message : error
      }). Either set TEST_REDIS_CLUSTER_URL to a running cluster (redis+cluster://host:port,…), ` +
        "or install redis-server and redis-cli for a throwaway local one.",
    );
  }
}

function probe(service: ComposeService, url: string, timeoutMs: number): Promise<ProbeResult> {
  return service === "postgres"
    ? probePostgres(url, { timeoutMs })
    : probeRedis(url, { timeoutMs });
}

interface ComposeState {
  found: Partial<Record<ComposeService, Found>>;
  reasons: Partial<Record<ComposeService, string>>;
  cleanups: (() => Promise<void>)[];
  log: (line: string) => void;
}

/** Brings up `missing` with compose; a failure is noted and leaves them to the next way. */
async function composeUp(missing: ComposeService[], state: ComposeState): Promise<void> {
  const project = await ComposeProject.open();
  if (!project) {
    state.log("with_services: Docker runs, but neither `docker compose` nor docker-compose does");
    return;
  }
  const ports = composePorts();
  const before = await project.running();
  const ours = missing.filter((s) => !before.includes(s));
  if (ours.length > 0) {
    const wholeProject = before.length === 0 && ours.length === SERVICES.length;
    state.cleanups.push(async () => {
      const down = await project.down(ours, wholeProject);
      if (down.code !== 0) throw new Error(`docker compose down failed: ${down.stderr.trim()}`);
    });
  }
  const up = await project.up(missing);
  if (up.code !== 0) {
    const detail = up.stderr.trim().split("\n").slice(-5).join(" | ");
    state.log(`with_services: docker compose up failed (exit ${up.code}): ${detail}`);
    for (const s of missing) state.reasons[s] += `; docker compose up failed (exit ${up.code})`;
    return;
  }
  await Promise.all(missing.map(async (service) => {
    const url = composeUrl(service, ports[service]);
    try {
      // Healthy inside the container is not always reachable from here at once.
      await pollUntil(`${LABEL[service]} from docker compose`, async () => {
        return (await probe(service, url, 1_000)).ok ? true : undefined;
      }, { timeoutMs: 30_000, intervalMs: 200 });
      state.found[service] = { url, source: "docker compose" };
    } catch (error) {
      state.reasons[service] += `; docker compose's at ${describeEndpoint(url)}: ${error}`;
    }
  }));
}

function unavailable(
  missing: readonly ComposeService[],
  reasons: Partial<Record<ComposeService, string>>,
  lacking: readonly string[],
): ServicesUnavailableError {
  const what = missing.map((s) => LABEL[s]).join(" and ");
  const why = missing.map((s) => reasons[s]).join("; ");
  return new ServicesUnavailableError(
    `with_services: cannot provide ${what} for the tests (${why}; ${
      lacking.join("; ")
    }). Either set TEST_DATABASE_URL / TEST_REDIS_URL to running servers, or start Docker ` +
      "so `docker compose up -d --wait` can run compose.yaml, or install postgresql and " +
      "redis-server (apt-get install postgresql redis-server) for throwaway local servers.",
  );
}
