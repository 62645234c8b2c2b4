/**
 * The `agentsocket.v1` wire protocol: frame types, the client-frame parser and the close
 * codes. Shared by the server and the client library; no runtime-specific API.
 *
 * @module
 */
export * from "./frames.ts";
export * from "./close_codes.ts";
