/**
 * The store port: threads, messages, runs and chat idempotency keys, every call scoped to a
 * user. `memory_store.ts` and `postgres_store.ts` implement it; `store_conformance` tests hold
 * both to the same behaviour.
 *
 * @module
 */
import type { HistoryMessage, RunStatus, ThreadSummary, Usage } from "../protocol/mod.ts";

/** A thread as listed by `GET /api/threads` (the wire shape). */
export type ThreadRecord = ThreadSummary;

/**
 * A message as listed by `GET /api/threads/:id/messages` (the wire shape). Its `seq` is null
 * only in the moment between storing the message and publishing its event.
 */
export type MessageRecord = HistoryMessage;

/** A run's error, as carried by `agent_failed.data.error`. */
export interface RunError {
  readonly code: string;
  readonly message: string;
}

/**
 * The error the claimer of a running orphan stores when it ends it (see
 * {@link ChatStore.claimOrphanedRuns}; docs/protocol.md#errors).
 */
export const INTERRUPTED_ERROR: RunError = Object.freeze({
  code: "interrupted",
  message: "The instance running this run stopped",
});

/** Longest title {@link ChatStore.renameThread} accepts, in characters (code points). */
export const MAX_THREAD_TITLE_LENGTH = 200;

/** One earlier turn of a thread, as text: what a model is given as context. */
export interface HistoryTurn {
  readonly role: "user" | "assistant";
  /** An assistant turn of a failed or cancelled run holds its partial reply (maybe ""). */
  readonly text: string;
  /** The status of the run the message belongs to. */
  readonly runStatus: RunStatus;
}

/** Which turns {@link ChatStore.threadHistory} reads. */
export interface HistoryRequest {
  /** The run whose context is read: its messages and any later ones are left out. */
  readonly beforeRunId: string;
  /** At most this many messages, the newest ones (0 reads none). */
  readonly limit: number;
}

/** A run as the store keeps it. */
export interface RunRecord {
  readonly id: string;
  readonly userId: string;
  readonly threadId: string;
  readonly chatId: string;
  /** The user's message that started the run. */
  readonly text: string;
  readonly status: RunStatus;
  /** Seq of `agent_started`, once published. */
  readonly startSeq: number | null;
  /** Seq of the terminal event, once published; null while running or not yet published. */
  readonly endSeq: number | null;
  /** The instance that drives the run (or publishes its terminal event). */
  readonly ownerInstance: string;
  /**
   * The assistant's reply once the run ended: the whole reply of a completed run, the reply so
   * far of a failed or cancelled one ("" when there was none); null while running.
   */
  readonly reply: string | null;
  /** Why the run failed, for a failed run. */
  readonly error: RunError | null;
  /** Tokens summed over the run's model calls; null while running or when never reported. */
  readonly usage: Usage | null;
  /** The finish reason of the run's last model call, when one was reported. */
  readonly finishReason: string | null;
  readonly createdAt: string;
  readonly finishedAt: string | null;
}

/** What a chat asks the store to record. */
export interface BeginChatInput {
  readonly userId: string;
  /** The client's idempotency key. */
  readonly chatId: string;
  /** Absent: start a new thread. */
  readonly threadId?: string;
  readonly text: string;
  /** The instance that will drive the run. */
  readonly ownerInstance: string;
  /** How long the owner's lease lasts before another instance may end the run. */
  readonly leaseMs: number;
  /**
   * The user's runs in flight allowed at once, this one included; 0 for no limit. Counted
   * over runs `running` whose lease has not lapsed, on every instance sharing the store.
   * @default {0}
   */
  readonly maxActiveRuns?: number;
}

/**
 * The outcome of {@link ChatStore.beginChat}. Decided atomically: two concurrent chats with
 * the same id yield one `started` and one `duplicate`; two on one thread, one `thread_busy`.
 */
export type BeginChatResult =
  | { readonly kind: "started"; readonly run: RunRecord }
  | {
    readonly kind: "duplicate";
    readonly threadId: string;
    readonly runId: string;
    readonly status: RunStatus;
  }
  | { readonly kind: "idempotency_conflict" }
  | { readonly kind: "not_found" }
  | { readonly kind: "thread_busy" }
  | { readonly kind: "too_many_runs" };

/**
 * How a run ended. `reply` is the whole reply of a completed run and the reply so far of a
 * failed or cancelled one ("" when none); `usage` is summed over the run's model calls and
 * `finishReason` is the last call's, each stored when known.
 */
export type RunOutcome =
  | {
    readonly status: "completed";
    readonly reply: string;
    readonly usage?: Usage;
    readonly finishReason?: string;
  }
  | {
    readonly status: "failed";
    readonly error: RunError;
    readonly reply: string;
    readonly usage?: Usage;
    readonly finishReason?: string;
  }
  | {
    readonly status: "cancelled";
    readonly reply: string;
    readonly usage?: Usage;
    readonly finishReason?: string;
  };

/** One page of a listing; `nextCursor` is absent on the last page. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly nextCursor?: string;
}

/** Paging of a listing. */
export interface PageRequest {
  /** At most this many items (the HTTP layer clamps it to 1..200). */
  readonly limit: number;
  /** A `nextCursor` from the previous page. */
  readonly before?: string;
}

/** Threads, messages, runs and idempotency keys, every call scoped to one user. */
export interface ChatStore {
  /** Its name in logs and on `/health/ready` (`memory`, `postgres`, ...); any but `memory` is probed. */
  readonly kind: string;

  /**
   * Records a chat: checks, in this order, the idempotency key (24 h: `duplicate` or
   * `idempotency_conflict`), the thread's owner (`not_found`), that the thread has no run in
   * flight (`thread_busy`) and the user's runs in flight against `maxActiveRuns`
   * (`too_many_runs`); then stores the user's message, the run (status `running`, owned by
   * `ownerInstance` with a lease) and the key, all or nothing. A refused chat stores nothing.
   *
   * @throws {RangeError} When `maxActiveRuns` is not a non-negative integer.
   * @throws {DependencyUnavailableError} when the store cannot be reached (nothing stored).
   */
  beginChat(input: BeginChatInput): Promise<BeginChatResult>;

  /**
   * Undoes a `started` chat whose `agent_started` could not be published, so that a retry with
   * the same id starts afresh: removes the run, its message, its key, and the thread when the
   * chat created it.
   */
  abandonChat(userId: string, runId: string): Promise<void>;

  /** Records the seq of the run's `agent_started` on the run and on the user's message. */
  recordRunStart(userId: string, runId: string, seq: number): Promise<void>;

  /**
   * Ends a running run: stores its status, reply, error, usage and finish reason, and the
   * reply as the run's assistant message, whatever the status (its text may be ""). A usage
   * count that is not a non-negative finite number is stored as 0 (rounded otherwise), so a
   * bad report never keeps a run from ending. Conditional: only a run still `running`
   * changes, so of two racing callers (the owner and the claimer of an orphan included)
   * exactly one gets true.
   */
  finishRun(userId: string, runId: string, outcome: RunOutcome): Promise<boolean>;

  /** Records the seq of the run's terminal event on the run and on the assistant's message. */
  recordRunEnd(userId: string, runId: string, seq: number): Promise<void>;

  /** The user's run, or null when it does not exist or is another user's. */
  getRun(userId: string, runId: string): Promise<RunRecord | null>;

  /** The user's threads, newest first (by creation). */
  listThreads(userId: string, page: PageRequest): Promise<Page<ThreadRecord>>;

  /**
   * The newest messages of the user's thread (or the page just older than `before`), oldest
   * first within the page, each with its run's status (and, on the assistant message of a
   * failed run, its error); null when the thread is not the user's.
   */
  listMessages(
    userId: string,
    threadId: string,
    page: PageRequest,
  ): Promise<Page<MessageRecord> | null>;

  /**
   * A model's context: the newest `limit` messages of the user's thread stored before the
   * user's message of `beforeRunId` (that run's messages excluded), oldest first, as text with
   * their run's status. Kept apart from {@link listMessages} so the orchestrator neither
   * pages nor filters out its own run. Null when the thread is not the user's or the run is
   * not one of the thread's.
   *
   * @throws {RangeError} When `limit` is not a non-negative integer.
   */
  threadHistory(
    userId: string,
    threadId: string,
    options: HistoryRequest,
  ): Promise<HistoryTurn[] | null>;

  /**
   * Renames the user's thread (and touches its `updatedAt`); the title is trimmed first.
   *
   * @returns The renamed thread, or null when it is not the user's.
   * @throws {RangeError} When the trimmed title is empty or longer than
   *   {@link MAX_THREAD_TITLE_LENGTH} characters.
   */
  renameThread(userId: string, threadId: string, title: string): Promise<ThreadRecord | null>;

  /**
   * Deletes the user's thread with its messages, runs and chat ids (a repeated chat id then
   * starts afresh). A run still `running` goes too, so its owner's `finishRun` returns false:
   * the caller cancels a run in flight first and purges the thread's events.
   *
   * @returns False when the thread is not the user's.
   */
  deleteThread(userId: string, threadId: string): Promise<boolean>;

  /** Extends the lease of the given runs owned by `ownerInstance`. */
  renewLeases(ownerInstance: string, runIds: readonly string[], leaseMs: number): Promise<void>;

  /**
   * Takes over runs whose owner's lease expired, each returned to exactly one claimer, now
   * owned by `claimer` with a fresh lease. A run still `running` stays running: the claimer
   * rebuilds its reply so far (from its `agent_delta` events) and ends it with `finishRun`
   * (`failed`, {@link INTERRUPTED_ERROR}), which the late owner can no longer win once it
   * has; should the claimer die first, its lease lapses and the run is claimed again. An
   * ended run whose terminal event was never published is returned so the claimer publishes
   * it. Oldest lease first.
   */
  claimOrphanedRuns(claimer: string, leaseMs: number, limit: number): Promise<RunRecord[]>;

  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;

  /** Releases connections and timers. */
  close(): Promise<void>;
}
