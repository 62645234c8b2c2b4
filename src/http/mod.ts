/**
 * The HTTP routes on hono (`docs/protocol.md#rest`): health, metrics, dev tokens, the REST
 * history, the page, and `/ws`, which hands over to the WebSocket edge.
 *
 * @module
 */
export * from "./create_app.ts";
