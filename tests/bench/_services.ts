/**
 * PostgreSQL and Redis for one bench run: a database and a Redis key prefix of the run's own
 * (removed afterwards, even on Ctrl-C), and the server processes behind them, found so that their
 * CPU can be read beside the server's ({@link CpuProbe}).
 *
 * How each server process is found, and checked to be the one that serves the bench:
 *
 * - Redis: `INFO server` gives its `process_id`. The process there must be named like a Redis
 *   server, and its CPU time from `/proc/<pid>/stat` must agree with what Redis itself reports
 *   (`INFO cpu`, user + system, within 2 s), which fails when Redis runs in another PID namespace
 *   (a container) where the pid means something else. Redis runs commands on one thread, but the
 *   whole process is counted (its background threads included).
 * - PostgreSQL: `pg_backend_pid()` on the bench's database gives one backend; its parent is the
 *   postmaster. Both must be named `postgres`. The probe sums the postmaster and every direct
 *   child, live or exited (see `treeCpuMs`): the backends serving the bench, the WAL writer and
 *   the checkpointer that its commits wake, and autovacuum.
 *
 * Both servers are shared with anything else that uses them: on a busy machine their figures
 * include other clients' work. The bare server's runs, which use neither, are measured with the
 * same probes, so what they show for Redis and PostgreSQL is that background.
 *
 * @module
 */
import type { CpuProbe } from "./_load_protocol.ts";
import { cpuMs, procStat } from "./_proc.ts";
import { within } from "./_processes.ts";

/** PostgreSQL and Redis, set up for one run. */
export interface Services extends AsyncDisposable {
  /** agentsocket's environment: `DATABASE_URL`, `REDIS_URL`, `REDIS_KEY_PREFIX`. */
  readonly env: Readonly<Record<string, string>>;
  readonly description: string;
  readonly redis: { readonly url: string; readonly prefix: string };
  /** `redis` and `postgres`, those that were found. */
  readonly probes: readonly CpuProbe[];
  /** Why a probe is missing, when one is. */
  readonly probeNotes: readonly string[];
}

function infoField(info: string, field: string): string | undefined {
  const match = new RegExp(`^${field}:(.*)$`, "m").exec(info);
  return match?.[1].trim();
}

/** The Redis server process behind `url`, checked; or the reason it cannot be measured. */
export async function findRedisProcess(url: string): Promise<CpuProbe | string> {
  const { Redis } = await import("ioredis");
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const server = await redis.info("server");
    const pid = Number(infoField(server, "process_id"));
    if (!Number.isSafeInteger(pid) || pid <= 0) return "Redis did not report its process_id";
    const stat = procStat(pid);
    if (!stat) return `Redis process ${pid} is not visible in /proc (another host or container)`;
    if (!/redis|valkey|keydb/i.test(stat.comm)) {
      return `process ${pid} is "${stat.comm}", not Redis (another PID namespace?)`;
    }
    const cpu = await redis.info("cpu");
    const reported = (Number(infoField(cpu, "used_cpu_user")) +
      Number(infoField(cpu, "used_cpu_sys"))) * 1000;
    const read = cpuMs(pid);
    if (!(Math.abs(reported - read) <= 2000)) {
      return `process ${pid}'s CPU (${read} ms) is not what Redis reports (${reported} ms)`;
    }
    return { name: "redis", pid, tree: true };
  } catch (error) {
    return `Redis process not found: ${(error as Error).message}`;
  } finally {
    redis.disconnect();
  }
}

/** The PostgreSQL postmaster behind `databaseUrl`, checked; or the reason it cannot be measured. */
export async function findPostgresProcess(databaseUrl: string): Promise<CpuProbe | string> {
  const { default: postgres } = await import("postgres");
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [{ pid }] = await sql<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const backend = procStat(pid);
    if (!backend) return `PostgreSQL backend ${pid} is not visible in /proc (another host?)`;
    const postmaster = procStat(backend.ppid);
    if (!/^postgres/.test(backend.comm) || !postmaster || !/^post/.test(postmaster.comm)) {
      return `process ${pid} and its parent are not PostgreSQL's (another PID namespace?)`;
    }
    return { name: "postgres", pid: backend.ppid, tree: true };
  } catch (error) {
    return `PostgreSQL process not found: ${(error as Error).message}`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Creates the run's database and key prefix on `TEST_DATABASE_URL` / `TEST_REDIS_URL` (the
 * test suites' servers), and finds their server processes.
 */
export async function openServices(): Promise<Services> {
  // Loaded only when asked for: the memory-engine phases need no database driver.
  const helpers = await import("../_helpers/services.ts");
  const database = await within(helpers.createTestDatabase(), 10_000, undefined);
  if (!database) throw new Error("PostgreSQL did not answer within 10 s");
  const redis = helpers.createTestRedisPrefix();
  try {
    await within(helpers.deleteRedisPrefix(redis.url, redis.prefix), 10_000, undefined);
    const probes: CpuProbe[] = [];
    const probeNotes: string[] = [];
    for (
      const found of [await findRedisProcess(redis.url), await findPostgresProcess(database.url)]
    ) {
      if (typeof found === "string") probeNotes.push(found);
      else probes.push(found);
    }
    return {
      env: { DATABASE_URL: database.url, REDIS_URL: redis.url, REDIS_KEY_PREFIX: redis.prefix },
      description: `database ${database.name}, Redis prefix ${redis.prefix}; CPU measured of ${
        probes.map((p) => `${p.name} (pid ${p.pid})`).join(", ") || "neither server"
      }`,
      redis: { url: redis.url, prefix: redis.prefix },
      probes,
      probeNotes,
      async [Symbol.asyncDispose]() {
        try {
          await redis[Symbol.asyncDispose]();
        } finally {
          await database[Symbol.asyncDispose]();
        }
      },
    };
  } catch (error) {
    await database[Symbol.asyncDispose]();
    throw error;
  }
}
