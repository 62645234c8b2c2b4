/**
 * Event engines: the per-user ordered event log with live fan-out (SPEC §3, §6).
 *
 * `MemoryEngine` is exported here. `RedisEngine` is imported from `./redis_engine.ts` directly
 * (only its options type is re-exported), so that importing this module never loads ioredis.
 *
 * @module
 */
export * from "./event_engine.ts";
export * from "./event_retention.ts";
export * from "./memory_engine.ts";
export type { RedisEngineOptions } from "./redis_engine.ts";
