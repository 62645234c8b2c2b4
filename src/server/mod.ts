/**
 * Composition of one instance: dependencies, the connection core, HTTP, drain.
 *
 * @module
 */
export * from "./build_server.ts";
export * from "./connection_registry.ts";
export * from "./drain_controller.ts";
export * from "./keep_listening.ts";
export * from "./startup_error.ts";
export * from "./test_seams.ts";
export * from "./agentsocket_options.ts";
export * from "./create_agentsocket.ts";
