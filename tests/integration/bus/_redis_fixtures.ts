/**
 * What the Redis engine's integration tests share: a set of engine instances on one Redis and
 * key prefix, closed together; the key names of a user's log; an admin connection.
 *
 * @module
 */
import { Redis } from "ioredis";
import { RedisEngine } from "../../../src/bus/redis_engine.ts";
import type { RedisEngineOptions } from "../../../src/bus/redis_engine.ts";
import { withDeadline } from "../../_helpers/engine_conformance.ts";

/** How long an engine may take to connect. */
export const CONNECT_MS = 10_000;

/** Engines on one Redis and prefix, closed together. */
export class EngineSet implements AsyncDisposable {
  readonly engines: RedisEngine[] = [];
  readonly url: string;
  readonly prefix: string;
  readonly #options: Partial<RedisEngineOptions>;

  constructor(url: string, prefix: string, options: Partial<RedisEngineOptions> = {}) {
    this.url = url;
    this.prefix = prefix;
    this.#options = options;
  }

  /** A new connected instance; `clock` overrides the set's. */
  async add(options: Partial<RedisEngineOptions> = {}): Promise<RedisEngine> {
    const engine = new RedisEngine({
      url: this.url,
      keyPrefix: this.prefix,
      instanceId: `instance-${this.engines.length}`,
      retention: { count: 1000, seconds: 3600 },
      ...this.#options,
      ...options,
    });
    this.engines.push(engine);
    await withDeadline(engine.whenConnected(), CONNECT_MS, "the engine to connect");
    return engine;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.engines.map((engine) => engine.close()));
  }
}

/** The keys of one user's log, as laid out by RedisEngine (see its module doc). */
export function userKeys(
  prefix: string,
  user: string,
): { meta: string; log: string; runs: string } {
  const base = `${prefix}:{${encodeURIComponent(user)}}`;
  return { meta: `${base}:meta`, log: `${base}:log`, runs: `${base}:runs` };
}

/** The key of a run's approval records (see RedisEngine's module doc). */
export function approvalsKey(prefix: string, user: string, runId: string): string {
  return `${prefix}:{${encodeURIComponent(user)}}:approvals:${runId}`;
}

/** Runs `fn` with a plain connection to `url`. */
export async function withAdmin<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}
