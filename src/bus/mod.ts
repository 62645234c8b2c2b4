/**
 * Event engines: the per-user ordered event log with live fan-out, retention that never drops
 * a run in flight, thread purges and tool approvals decided in the log
 * (docs/protocol.md#resume, docs/protocol.md#approval).
 *
 * {@link createEngine} builds the one the configuration names. `RedisEngine` is loaded only
 * when Redis is configured (import `./redis_engine.ts` directly otherwise; only its options
 * type is re-exported), so that importing this module never loads ioredis.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine } from "./event_engine.ts";
import type { EventRetention } from "./event_retention.ts";
import { MemoryEngine } from "./memory_engine.ts";

export * from "./event_engine.ts";
export * from "./event_retention.ts";
export * from "./memory_engine.ts";
export type { RedisEngineOptions } from "./redis_engine.ts";

/** What {@link createEngine} reads of the configuration. */
export interface EngineConfig {
  /** Redis (`REDIS_URL`: one server, or `redis+cluster://…` for a cluster); absent: memory. */
  readonly redisUrl?: string;
  /** Every Redis key and channel starts with it. */
  readonly redisKeyPrefix: string;
  /** This instance, in Redis client names and log lines. */
  readonly instanceId: string;
  /** How much of each user's log is kept. */
  readonly retention: EventRetention;
}

/** What every engine is given. */
export interface EngineDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

/** Builds one kind of engine from the configuration. */
export type EngineMaker = (config: EngineConfig, deps: EngineDeps) => Promise<EventEngine>;

const redis: EngineMaker = async (config, deps) => {
  const { RedisEngine } = await import("./redis_engine.ts");
  const { redisUrl: url, redisKeyPrefix: keyPrefix, instanceId, retention } = config;
  return new RedisEngine({ url: url!, keyPrefix, instanceId, retention, ...deps });
};

/**
 * The shared engine each URL scheme of `REDIS_URL` names: a new engine is one new file plus
 * one line here (the configuration accepts exactly these schemes).
 */
export const ENGINES: Readonly<Record<string, EngineMaker>> = {
  "redis:": redis,
  "rediss:": redis,
  "redis+cluster:": redis, // a Redis Cluster, given by some of its nodes
  "rediss+cluster:": redis,
};

/** The scheme of a URL (`redis+cluster:`), read without parsing the rest. */
export function urlScheme(url: string): string {
  return /^([A-Za-z][A-Za-z0-9+.-]*:)/.exec(url)?.[1].toLowerCase() ?? "";
}

/**
 * Builds the engine the configuration names: the memory engine without a URL, else the one
 * {@link ENGINES} gives the URL's scheme.
 *
 * @param config The engine's settings.
 * @param deps The clock and the logger.
 * @throws {RangeError} for a scheme no engine has (the configuration refuses it first).
 */
export async function createEngine(config: EngineConfig, deps: EngineDeps): Promise<EventEngine> {
  if (!config.redisUrl) return new MemoryEngine({ retention: config.retention, ...deps });
  const make = ENGINES[urlScheme(config.redisUrl)];
  if (!make) {
    throw new RangeError(
      `Cannot create event engine: no engine for "${urlScheme(config.redisUrl)}//"`,
    );
  }
  return await make(config, deps);
}
