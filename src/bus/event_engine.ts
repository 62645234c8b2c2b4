/**
 * The event engine port: a per-user ordered event log with live fan-out. The connection core
 * and the run orchestrator talk only to this interface; `memory_engine.ts` and
 * `redis_engine.ts` implement it, and `_engine_rules.ts` holds the rules they share.
 *
 * What the log guarantees (docs/protocol.md#resume):
 * - Seqs are per user, assigned 1, 2, 3… with no seq issued twice within an epoch.
 * - Retention (a count and an age) never drops an event of a run in flight: the limits apply
 *   only to events older than the oldest `agent_started` of the user's active runs.
 * - A purged thread's events are never read again ({@link EventEngine.purgeThread}); the seqs
 *   they held stay used, so a read may have holes. A hole is not a gap: a `complete`
 *   {@link EventRange} holds every event after `after` up to its `seq` that still exists.
 * - Tool approvals are decided in the log ({@link EventEngine.resolveApproval}): the decision
 *   and its `tool_approval_resolved` event are one atomic step, so the first decision wins on
 *   every instance and the instance running the tool reads it from the log.
 *
 * @module
 */
import type { ActiveRun, ApprovalDecider, EventData, ResumePosition } from "../protocol/mod.ts";

/**
 * One run event as stored in a user's log. `seq` is per user, from 1; the seqs of a purged
 * thread's events are never read again, so reads may skip them.
 */
export interface UserEvent {
  readonly seq: number;
  readonly threadId: string;
  readonly runId: string;
  readonly name: string;
  readonly data: Record<string, unknown>;
  /** ISO 8601 UTC, for display only. */
  readonly ts: string;
}

/** An event to append; the engine assigns its `seq`. */
export type NewEvent = Omit<UserEvent, "seq">;

/**
 * The outcome of {@link EventEngine.publish}.
 *
 * The engine knows which runs are in flight (it records `agent_started` and the terminal event
 * in the same atomic step that assigns the seq), so it refuses any event for a run that has
 * already ended: a run never gets a second terminal event, even when two instances race to end
 * it, or an event after its terminal one.
 */
export type PublishResult =
  | { readonly published: true; readonly epoch: string; readonly event: UserEvent }
  | {
    readonly published: false;
    /**
     * `run_ended`: the run already has its terminal event. `thread_purged`: the event's thread
     * was purged ({@link EventEngine.purgeThread}); nothing of it is appended any more.
     */
    readonly reason: "run_ended" | "thread_purged";
    /** With `run_ended`: the seq of the run's terminal event, when the engine remembers it. */
    readonly endSeq?: number;
  };

/**
 * Receives a user's live events, in seq order, with no duplicate and no gap other than the
 * seqs of purged events.
 */
export interface EventListener {
  /**
   * Called once per event. `epoch` is the log's incarnation: when it differs from the one a
   * connection started with, the log was reset and the connection must start over.
   */
  (event: UserEvent, epoch: string): void;
}

/** A live subscription; `unsubscribe()` is idempotent. */
export interface EventSubscription {
  unsubscribe(): void;
}

/** What a handshake reads after its subscription is live, in one consistent step. */
export interface CatchUp {
  /** The incarnation of the user's log. */
  readonly epoch: string;
  /** The user's latest seq at the moment of the read (0 when none). */
  readonly seq: number;
  /** Runs of the user in flight at that moment. */
  readonly activeRuns: readonly ActiveRun[];
  /**
   * True when `resume` was honoured: same epoch, `after <= seq`, and all of it retained (purged
   * events count as retained: their seqs are holes, not a gap).
   */
  readonly resumed: boolean;
  /**
   * Resumed: every event with `after < seq' <= seq`. Otherwise: the retained events of each
   * active run from its `agent_started` (which retention keeps while the run is in flight) up
   * to `seq`. Always in seq order, purged events left out; the reader continues after `seq`.
   */
  readonly events: readonly UserEvent[];
}

/**
 * A range read for gap backfill. A reader that got a `complete` range has seen everything up
 * to `seq` and continues after `seq`, not after its last event: the seqs in between belonged
 * to purged events.
 */
export interface EventRange {
  readonly epoch: string;
  /** The user's latest seq at the time of the read (0 when none). */
  readonly seq: number;
  /**
   * Events with `seq > after`, in order, up to the head at the time of the read; purged
   * events left out (so seqs may skip).
   */
  readonly events: readonly UserEvent[];
  /**
   * False when events right after `after` are no longer retained (a gap that cannot be filled).
   * True means every event after `after` up to `seq` that was not purged is in `events`.
   */
  readonly complete: boolean;
}

/** What the log knows of one run's seqs. */
export interface RunSeqs {
  readonly startSeq?: number;
  readonly endSeq?: number;
}

/** A `tool_approval_requested` event to publish; the engine adds `data.expiresAt`. */
export interface NewApprovalRequest {
  readonly threadId: string;
  readonly runId: string;
  /** The event's data without `expiresAt`. `toolCallId` is unique within the user. */
  readonly data: Omit<EventData["tool_approval_requested"], "expiresAt">;
  /** ISO 8601 UTC, for display only. */
  readonly ts: string;
}

/**
 * The outcome of {@link EventEngine.requestApproval}: like {@link PublishResult}, and
 * `already_requested` when the run already asked for this `toolCallId` (nothing published).
 */
export type RequestApprovalResult =
  | PublishResult
  | { readonly published: false; readonly reason: "already_requested" };

/** One decision on a pending approval, by a user's answer, the timeout or the run's end. */
export interface ApprovalDecision {
  readonly runId: string;
  readonly toolCallId: string;
  /** Only a user may approve: any other decider is a denial. */
  readonly approved: boolean;
  readonly by: ApprovalDecider;
  /** Why (a user's deny reason, given to the model). */
  readonly reason?: string;
  /** The `ts` of the `tool_approval_resolved` event, for display. */
  readonly ts: string;
}

/**
 * The outcome of {@link EventEngine.resolveApproval}, checked in this order:
 * - `not_found`: no such request in this run (unknown, foreign, or of a purged thread);
 * - `run_ended`: the run has its terminal event (an answer then gets `run_finished`);
 * - `already`: decided before; the winner is given, so a caller can tell a repeat of the
 *   winning answer (no error) from a different one (`already_resolved`);
 * - `not_expired`: a `timeout` decision before `expiresAt` on the engine's clock;
 * - `resolved`: this decision won and `event` (`tool_approval_resolved`) was published in the
 *   same atomic step.
 */
export type ResolveApprovalResult =
  | { readonly outcome: "resolved"; readonly epoch: string; readonly event: UserEvent }
  | {
    readonly outcome: "already";
    readonly approved: boolean;
    readonly by: ApprovalDecider;
    readonly reason?: string;
  }
  | { readonly outcome: "not_expired"; readonly expiresAt: string }
  | { readonly outcome: "run_ended" }
  | { readonly outcome: "not_found" };

/** What the log holds of one approval request and its decision. */
export interface ApprovalRecord {
  readonly runId: string;
  readonly threadId: string;
  readonly toolCallId: string;
  readonly tool: string;
  /** ISO 8601 UTC, on the engine's clock: a `timeout` decision is accepted from then on. */
  readonly expiresAt: string;
  /** The seq of its `tool_approval_requested`. */
  readonly requestSeq: number;
  /** The decision, once made; `seq` is that of its `tool_approval_resolved`. */
  readonly decision?: {
    readonly approved: boolean;
    readonly by: ApprovalDecider;
    readonly reason?: string;
    readonly seq: number;
  };
}

/** Messages between instances over the engine's control channel. */
export type ControlMessage = {
  readonly type: "cancel";
  readonly userId: string;
  readonly runId: string;
};

/** The per-user ordered event log, live fan-out, control channel and connection counting. */
export interface EventEngine {
  /** Its name in logs and on `/health/ready` (`memory`, `redis`, ...); `shared` says what matters. */
  readonly kind: string;
  /** True when other instances see the same log (drain then closes sockets at once). */
  readonly shared: boolean;

  /**
   * Appends an event for `userId`: assigns the next seq, appends it and notifies subscribers
   * in one atomic step.
   *
   * @throws {DependencyUnavailableError} when the backing service cannot be reached.
   */
  publish(userId: string, event: NewEvent): Promise<PublishResult>;

  /**
   * Subscribes to the user's live events. The returned promise resolves only once the
   * subscription is live: every event published after that reaches `listener`.
   */
  subscribe(userId: string, listener: EventListener): Promise<EventSubscription>;

  /** Reads the handshake snapshot (see {@link CatchUp}); call it after `subscribe` resolves. */
  catchUp(userId: string, resume?: ResumePosition): Promise<CatchUp>;

  /** Reads events after `after` (for filling a gap in live delivery). */
  readAfter(userId: string, after: number): Promise<EventRange>;

  /**
   * The seqs the log gave each run: its `agent_started` while it is in flight, its terminal
   * event once it ended (remembered for the retention age). Runs the engine does not know are
   * absent. History uses it to fill a message's seq in the moment between the event going out
   * and the store recording it.
   */
  runSeqs(userId: string, runIds: readonly string[]): Promise<Map<string, RunSeqs>>;

  /**
   * Counts a connection against the user's limit, across instances when shared.
   *
   * @returns false when the user already holds `limit` connections.
   */
  acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean>;

  /** Releases a connection counted by {@link acquireConnection}; idempotent. */
  releaseConnection(userId: string, connectionId: string): Promise<void>;

  /** Sends a control message to every instance (this one included). */
  sendControl(message: ControlMessage): Promise<void>;

  /** Registers a handler for control messages; returns its unregister function. */
  onControl(handler: (message: ControlMessage) => void): () => void;

  /**
   * Purges a thread from the user's log: its events are left out of every later read
   * (catch-up, resume, {@link readAfter}, live backfill), its runs leave `activeRuns`, and any
   * later event of the thread is refused (`thread_purged`). Seqs stay as they were, so resumes
   * and gap checks still hold (a read may skip the purged seqs). The purge is remembered until
   * none of the thread's events is retained and at least the retention age has passed.
   */
  purgeThread(userId: string, threadId: string): Promise<void>;

  /**
   * Publishes `tool_approval_requested` with `data.expiresAt` = the engine's clock +
   * `timeoutMs`, and records the pending request, in one atomic step. The record lives as long
   * as the run and the retention age after it.
   *
   * @throws {RangeError} when `timeoutMs` is not a positive integer.
   */
  requestApproval(
    userId: string,
    request: NewApprovalRequest,
    options: { readonly timeoutMs: number },
  ): Promise<RequestApprovalResult>;

  /**
   * Decides a pending approval: the first decision wins, from any instance, and is published
   * as `tool_approval_resolved` in the same atomic step. See {@link ResolveApprovalResult}.
   *
   * @throws {TypeError} when `approved` is true and `by` is not `user`.
   */
  resolveApproval(userId: string, decision: ApprovalDecision): Promise<ResolveApprovalResult>;

  /**
   * Reads one approval request and its decision from the log; `undefined` when unknown (or of
   * a purged thread). This is how the instance running the tool learns the decision, whichever
   * instance made it. Looked up by run and tool call: a run's records are kept together, so
   * they live exactly as long as the run plus the retention age, and a tool call is never
   * found under another run.
   */
  approvalState(
    userId: string,
    ids: { readonly runId: string; readonly toolCallId: string },
  ): Promise<ApprovalRecord | undefined>;

  /** The run's undecided approval requests, oldest first (to resolve them when it ends). */
  pendingApprovals(userId: string, runId: string): Promise<ApprovalRecord[]>;

  /** The engine's clock, in ms since the epoch: Redis `TIME` when shared, so instances agree. */
  now(): Promise<number>;

  /** Resolves when the backing service answers; rejects otherwise. Never queues. */
  ping(): Promise<void>;

  /** Stops timers and connections. */
  close(): Promise<void>;
}
