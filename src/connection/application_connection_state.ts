/**
 * The lifecycle of one connection: one string union, one transition table. Only the
 * connection actor writes the state, through {@link isAllowedTransition}.
 *
 * @module
 */

/** Lifecycle of one connection, in the order its states are reached. */
export const CONNECTION_STATES = [
  "connecting",
  "accepted",
  "authenticated",
  "services_ready",
  "processing_ready",
  "closing",
  "closed",
] as const;

/**
 * - `connecting`: the upgrade was answered; the socket is not open yet.
 * - `accepted`: the socket is open; waiting for `hello`.
 * - `authenticated`: every token offered is verified and names one user; the connection is
 *   counted against the user's limit.
 * - `services_ready`: the user's live subscription is up and the catch-up read is done.
 * - `processing_ready`: `ready` (and the catch-up events) are sent; frames are handled.
 * - `closing`: a close was decided (its cause recorded once) or the peer closed.
 * - `closed`: cleanup ran; nothing more happens.
 */
export type ApplicationConnectionState = typeof CONNECTION_STATES[number];

const ALLOWED_NEXT: Record<ApplicationConnectionState, readonly ApplicationConnectionState[]> = {
  connecting: ["accepted", "closing"],
  accepted: ["authenticated", "closing"],
  authenticated: ["services_ready", "closing"],
  "services_ready": ["processing_ready", "closing"],
  "processing_ready": ["closing"],
  closing: ["closed"],
  closed: [],
};

/**
 * Reports whether `to` may follow `from`; the actor records any other move as a race.
 *
 * @param from The current state.
 * @param to The proposed next state.
 */
export function isAllowedTransition(
  from: ApplicationConnectionState,
  to: ApplicationConnectionState,
): boolean {
  return ALLOWED_NEXT[from].includes(to);
}

/** True while a connection can still make progress (not `closing` or `closed`). */
export function isLive(state: ApplicationConnectionState): boolean {
  return state !== "closing" && state !== "closed";
}
