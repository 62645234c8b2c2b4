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
  /** Redis (`REDIS_URL`); absent: the in-memory engine. */
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

/**
 * Builds the engine the configuration names: one line per kind of engine.
 *
 * @param config The engine's settings.
 * @param deps The clock and the logger.
 */
export async function createEngine(config: EngineConfig, deps: EngineDeps): Promise<EventEngine> {
  const { retention } = config;
  if (config.redisUrl) {
    const { RedisEngine } = await import("./redis_engine.ts");
    const { redisUrl: url, redisKeyPrefix: keyPrefix, instanceId } = config;
    return new RedisEngine({ url, keyPrefix, instanceId, retention, ...deps });
  }
  return new MemoryEngine({ retention, ...deps });
}
