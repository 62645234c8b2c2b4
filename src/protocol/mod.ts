/**
 * The `agentsocket.v1` wire protocol: frame types, the client-frame parser, the run-event
 * catalogue, the close codes with what a client does about each, and the REST history's
 * shapes. Shared by the server and the client library; no runtime-specific API.
 *
 * @module
 */
export * from "./frames.ts";
export * from "./events.ts";
export * from "./close_codes.ts";
export * from "./rest.ts";
