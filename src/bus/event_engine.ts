/**
 * The event engine port: a per-user ordered event log with live fan-out. The connection core
 * and the run orchestrator talk only to this interface; `memory_engine.ts` and
 * `redis_engine.ts` implement it.
 *
 * @module
 */
import type { ActiveRun, ResumePosition } from "../protocol/mod.ts";

/** One run event as stored in a user's log. `seq` is per user, gap-free, from 1. */
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
    readonly reason: "run_ended";
    /** The seq of the run's terminal event, when the engine still remembers it. */
    readonly endSeq?: number;
  };

/** Receives a user's live events, in seq order, with no gap and no duplicate. */
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
  /** True when `resume` was honoured: same epoch, `after <= seq`, and all of it retained. */
  readonly resumed: boolean;
  /**
   * Resumed: every event with `after < seq' <= seq`. Otherwise: the retained events of each
   * active run from its `agent_started` up to `seq`. Always in seq order.
   */
  readonly events: readonly UserEvent[];
}

/** A range read for gap backfill. */
export interface EventRange {
  readonly epoch: string;
  /** The user's latest seq at the time of the read (0 when none). */
  readonly seq: number;
  /** Events with `seq > after`, in order, up to the head at the time of the read. */
  readonly events: readonly UserEvent[];
  /** False when events right after `after` are no longer retained (a gap that cannot be filled). */
  readonly complete: boolean;
}

/** What the log knows of one run's seqs. */
export interface RunSeqs {
  readonly startSeq?: number;
  readonly endSeq?: number;
}

/** Messages between instances over the engine's control channel. */
export type ControlMessage = {
  readonly type: "cancel";
  readonly userId: string;
  readonly runId: string;
};

/** The per-user ordered event log, live fan-out, control channel and connection counting. */
export interface EventEngine {
  /** `memory` (one process) or `redis` (shared by every instance). */
  readonly kind: "memory" | "redis";
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

  /** Resolves when the backing service answers; rejects otherwise. Never queues. */
  ping(): Promise<void>;

  /** Stops timers and connections. */
  close(): Promise<void>;
}
