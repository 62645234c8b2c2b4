/**
 * The client's connection lifecycle: one string union, one transition table.
 *
 * @module
 */

/**
 * The states of a client, in the order they are first reached.
 *
 * - `connecting`: the first connection is being made.
 * - `ready`: the server sent `ready`; frames flow.
 * - `reconnecting`: the connection was lost; the client is waiting out its backoff or
 *   connecting again, and will resume.
 * - `closed`: for good, by {@link AgentSocketClient.close} or a close code that forbids retrying.
 */
export const CLIENT_STATES = ["connecting", "ready", "reconnecting", "closed"] as const;

/** One of {@link CLIENT_STATES}. */
export type ClientState = typeof CLIENT_STATES[number];

const ALLOWED_NEXT: Record<ClientState, readonly ClientState[]> = {
  connecting: ["ready", "reconnecting", "closed"],
  ready: ["reconnecting", "closed"],
  reconnecting: ["ready", "closed"],
  closed: [],
};

/** Whether `to` may follow `from`. */
export function isAllowedClientTransition(from: ClientState, to: ClientState): boolean {
  return ALLOWED_NEXT[from].includes(to);
}
