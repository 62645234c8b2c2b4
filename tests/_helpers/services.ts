/**
 * Where the integration and e2e tests find PostgreSQL and Redis, and how each test isolates
 * its data: its own database, its own Redis key prefix, both removed after.
 * `scripts/with_services.ts` sets TEST_DATABASE_URL / TEST_REDIS_URL before the suites run.
 *
 * @module
 */
import postgres from "postgres";
import { Redis } from "ioredis";

/** The PostgreSQL server the tests use (the default README.md#tests names). */
export function testDatabaseUrl(): string {
  return Deno.env.get("TEST_DATABASE_URL") ??
    "postgres://postgres:postgres@127.0.0.1:5432/postgres";
}

/** The Redis server the tests use (the default README.md#tests names). */
export function testRedisUrl(): string {
  return Deno.env.get("TEST_REDIS_URL") ?? "redis://127.0.0.1:6379";
}

/** A short random suffix for names. */
export function randomSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

/** A database of its own for one test; dropped on dispose. */
export interface TestDatabase extends AsyncDisposable {
  /** Connection URL of the new database. */
  readonly url: string;
  readonly name: string;
}

/**
 * Creates an empty database on the test server.
 *
 * @param serverUrl The server (defaults to {@link testDatabaseUrl}).
 */
export async function createTestDatabase(serverUrl = testDatabaseUrl()): Promise<TestDatabase> {
  const name = `agentsocket_test_${randomSuffix()}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async [Symbol.asyncDispose]() {
      const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** A Redis key prefix of its own for one test; its keys are deleted on dispose. */
export interface TestRedisPrefix extends AsyncDisposable {
  readonly url: string;
  readonly prefix: string;
}

/**
 * Picks a fresh key prefix on the test Redis server.
 *
 * @param serverUrl The server (defaults to {@link testRedisUrl}).
 */
export function createTestRedisPrefix(serverUrl = testRedisUrl()): TestRedisPrefix {
  const prefix = `agentsocket_test_${randomSuffix()}`;
  return {
    url: serverUrl,
    prefix,
    async [Symbol.asyncDispose]() {
      await deleteRedisPrefix(serverUrl, prefix);
    },
  };
}

/** Deletes every key under `prefix` (never FLUSHALL: the server is shared). */
export async function deleteRedisPrefix(serverUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(serverUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/** A free TCP port on 127.0.0.1 (bind to 0, read it, release it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The environment for a server process using its own database and key prefix. */
export interface ServiceEnv extends AsyncDisposable {
  readonly env: Record<string, string>;
  readonly database: TestDatabase;
  readonly redis: TestRedisPrefix;
}

/** A JWT secret shared by the processes of one test, so tokens work on every instance. */
export const TEST_JWT_SECRET = "agentsocket-e2e-secret-of-at-least-32-bytes";

/**
 * Creates a database and a Redis key prefix for one test and returns the server environment
 * that uses them (with a shared JWT secret); both are removed on dispose.
 */
export async function createServiceEnv(): Promise<ServiceEnv> {
  const database = await createTestDatabase();
  const redis = createTestRedisPrefix();
  return {
    database,
    redis,
    env: {
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: redis.prefix,
      JWT_SECRET: TEST_JWT_SECRET,
    },
    async [Symbol.asyncDispose]() {
      await redis[Symbol.asyncDispose]();
      await database[Symbol.asyncDispose]();
    },
  };
}
