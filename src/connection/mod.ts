/**
 * The race-free connection core: the lifecycle states, the per-connection actor and its parts
 * (mailbox, event cursor, flow control, token bucket, close linger), the handshake
 * coordinator, the dependency readiness checker and the race-condition detector. It never
 * imports hono, Deno APIs, PostgreSQL or Redis; it is given narrow ports.
 *
 * @module
 */
export * from "./application_connection_state.ts";
export * from "./close_linger.ts";
export * from "./connection_actor.ts";
export * from "./connection_guards.ts";
export * from "./connection_readiness_checker.ts";
export * from "./event_cursor.ts";
export * from "./flow_control.ts";
export * from "./handshake_coordinator.ts";
export * from "./mailbox.ts";
export * from "./ports.ts";
export * from "./race_condition_detector.ts";
export * from "./readiness_latches.ts";
export * from "./socket_port.ts";
export * from "./token_bucket.ts";
