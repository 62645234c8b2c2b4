/**
 * The agentsocket client library: one WebSocket kept ready across reconnects, with resume,
 * token refresh, idempotent chat resends and a conversation view merging the live events
 * with the REST history. It uses only the standard `WebSocket` and `fetch`, so it runs
 * unchanged in browsers and in Deno; its frame types are `src/protocol`'s, shared with the
 * server.
 *
 * @example Ask a question and wait for the reply
 * ```ts ignore
 * import { connect } from "./mod.ts";
 *
 * const client = connect({
 *   url: "ws://127.0.0.1:8000/ws",
 *   getToken: async () => (await (await fetch("http://127.0.0.1:8000/auth/dev-token", {
 *     method: "POST",
 *     body: JSON.stringify({ userId: "alice" }),
 *   })).json()).token,
 * });
 * client.on("state", ({ to }) => console.log("state:", to));
 * const run = client.chat("what is 6*7");
 * for await (const event of run) console.log(event.seq, event.name);
 * console.log(await run.reply); // "6*7 = 42"
 * await client.close();
 * ```
 *
 * @module
 */
export { AgentSocketClient, connect } from "./agent_socket_client.ts";
export type {
  ChatOptions,
  ClientEventMap,
  ConnectOptions,
  Disconnect,
  ResetInfo,
  StateChange,
} from "./agent_socket_client.ts";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
export type { BackoffOptions } from "./backoff.ts";
export type { ChatRun, ChatRunOutcome, ChatRunState } from "./chat_run.ts";
export { webSocketFactory } from "./client_socket.ts";
export type { ClientSocket, SocketFactory, SocketHandlers } from "./client_socket.ts";
export { CLIENT_STATES, isAllowedClientTransition } from "./client_state.ts";
export type { ClientState } from "./client_state.ts";
export { Conversation } from "./conversation.ts";
export type {
  ConversationClient,
  ConversationOptions,
  Turn,
  TurnStatus,
  TurnStep,
} from "./conversation.ts";
export { ChatRefusedError, ClientClosedError, RunFailedError, RunLostError } from "./errors.ts";
export { HistoryRequestError } from "./history.ts";
export type { HistoryMessage, HistoryPage, PageOptions, ThreadSummary } from "./history.ts";
export { jwtExpiry } from "./jwt_expiry.ts";
export { systemTimers } from "./timers.ts";
export type { ClientTimers, TimerHandle } from "./timers.ts";
export type { ActiveRun, EventFrame, EventName, ReadyFrame } from "../protocol/mod.ts";
