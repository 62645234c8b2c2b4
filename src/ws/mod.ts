/**
 * The WebSocket edge: checks before the upgrade, the upgrade itself, the hand-over to the
 * connection actor.
 *
 * @module
 */
export * from "./upgrade.ts";
export * from "./origin_policy.ts";
export * from "./protocol_offer.ts";
