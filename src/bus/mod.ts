/**
 * Event engines: the per-user ordered event log with live fan-out (SPEC §3, §6).
 *
 * @module
 */
export * from "./event_engine.ts";
