/**
 * The agentsocket client library: one WebSocket kept ready across reconnects, with resume,
 * token refresh and idempotent chat resends; runs that expose their reply as it streams, their
 * reasoning, their tool calls and the approvals they wait for; the caller's threads over REST,
 * and a conversation view merging a thread's history with its live runs. It uses only the
 * standard `WebSocket` and `fetch`, so it runs unchanged in browsers and in Deno; its frame
 * types are `src/protocol`'s, shared with the server.
 *
 * @example Ask a question and print the reply as it streams
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
 * const run = client.chat("what is 6*7");
 * for await (const piece of run.pieces()) {
 *   if (piece.kind === "text") console.log(piece.text);
 * }
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
export type { ChatRun, ChatRunOutcome, ChatRunState, PendingApproval } from "./chat_run.ts";
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
export {
  ApprovalRefusedError,
  ChatRefusedError,
  ClientClosedError,
  FrameTooLargeError,
  RunFailedError,
  RunLostError,
} from "./errors.ts";
export type { ApprovalRefusalCode, ChatRefusalCode } from "./errors.ts";
export { HistoryRequestError, MAX_TITLE_LENGTH } from "./history.ts";
export type { HistoryMessage, HistoryPage, PageOptions, ThreadSummary } from "./history.ts";
export { jwtExpiry } from "./jwt_expiry.ts";
export { DEFAULT_MAX_FRAME_BYTES, frameBytes } from "./frame_size.ts";
export { milestoneOf } from "./run_progress.ts";
export type {
  ApprovalResolution,
  RunEnding,
  RunMilestone,
  RunPiece,
  RunStep,
  ToolApproval,
  ToolCall,
  ToolCallStatus,
} from "./run_progress.ts";
export { systemTimers } from "./timers.ts";
export type { ClientTimers, TimerHandle } from "./timers.ts";
export type {
  ActiveRun,
  EventFrame,
  EventName,
  ReadyFrame,
  RunEvent,
  RunStatus,
} from "../protocol/mod.ts";
