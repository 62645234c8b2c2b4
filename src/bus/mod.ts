/**
 * Event engines: the per-user ordered event log with live fan-out, retention that never drops
 * a run in flight, thread purges and tool approvals decided in the log
 * (docs/protocol.md#resume, docs/protocol.md#approval).
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
