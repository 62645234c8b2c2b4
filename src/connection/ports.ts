/**
 * The narrow ports the connection core is given. Auth, the run orchestrator and the server
 * implement them; the core never sees hono, Deno, PostgreSQL or Redis.
 *
 * @module
 */
import type { AckFrame, ApproveFrame, ChatFrame, ErrorCode } from "../protocol/mod.ts";

/** A verified user: the JWT `sub` and `exp` (seconds since the epoch). */
export interface Principal {
  readonly userId: string;
  readonly exp: number;
}

/** Verifies a bearer token. */
export interface TokenVerifier {
  /**
   * @throws {InvalidTokenError} when the token is malformed, badly signed, expired or lacks
   *   `sub`/`exp`.
   * @throws {DependencyUnavailableError} when a key source (JWKS) cannot be reached.
   */
  verify(token: string): Promise<Principal>;
}

/** A token was refused (the close code is 4401, or HTTP 401 before an upgrade). */
export class InvalidTokenError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidTokenError";
  }
}

/** A refusal answered with an `error` frame. */
export interface Refusal {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
  /** With code `refused`: the host's own reason, sent as the error frame's `refusal`. */
  readonly refusal?: string;
}

/** The outcome of a chat: the ack to send, or the error to answer. */
export type ChatOutcome = { readonly ok: true; readonly ack: AckFrame } | Refusal;

/** The outcome of a cancel (its effect arrives as the run's events). */
export type CancelOutcome = { readonly ok: true } | Refusal;

/** The outcome of an approve (the decision arrives as `tool_approval_resolved`). */
export type ApproveOutcome = { readonly ok: true } | Refusal;

/** Starts and cancels runs on behalf of a connection. */
export interface RunService {
  /**
   * Stores the chat and starts its run (or recognises a repeated `id`). Resolves with the ack
   * only once the message and the run are stored; the run's events are published after that.
   */
  startChat(principal: Principal, chat: ChatFrame): Promise<ChatOutcome>;
  /** Ends a run in flight, wherever it runs. */
  cancel(principal: Principal, runId: string): Promise<CancelOutcome>;
  /** Answers a pending approval of one of the user's runs, wherever it runs. */
  approve(principal: Principal, frame: ApproveFrame): Promise<ApproveOutcome>;
}

/** Whether the server takes new work. */
export interface ServerGate {
  /** True when every dependency answers (from the background probe, never a probe per call). */
  dependenciesReady(): boolean;
  /** True once a drain started. */
  draining(): boolean;
}
