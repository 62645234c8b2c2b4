/**
 * The store port: threads, messages, runs and chat idempotency keys, every call scoped to a
 * user. `memory_store.ts` and `postgres_store.ts` implement it; `store_conformance` tests hold
 * both to the same behaviour.
 *
 * @module
 */
import type { HistoryMessage, RunStatus, ThreadSummary, Usage } from "../protocol/mod.ts";

/** A thread as listed by `GET /api/threads` (the wire shape, SPEC §2). */
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
  /** The assistant's reply, for a completed run. */
  readonly reply: string | null;
  /** Why the run failed, for a failed run. */
  readonly error: RunError | null;
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
  /** At most this many runs of the user in flight (0: no limit). @default 0 */
  readonly maxActiveRuns?: number;
  /** How long the owner's lease lasts before another instance may end the run. */
  readonly leaseMs: number;
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

/** How a run ended. */
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
  }
  | { readonly status: "cancelled"; readonly reply: string; readonly usage?: Usage };

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
  /** `memory` or `postgres`. */
  readonly kind: "memory" | "postgres";

  /**
   * Records a chat: checks the idempotency key (24 h), the thread's owner and that the thread
   * has no run in flight, then stores the user's message, the run (status `running`, owned by
   * `ownerInstance` with a lease) and the key, all or nothing.
   *
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
   * Ends a running run, storing the assistant's reply as a message when completed. Conditional:
   * only a run still `running` changes, so of two racing callers exactly one gets true.
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
   * first within the page; null when the thread is not the user's.
   */
  listMessages(
    userId: string,
    threadId: string,
    page: PageRequest,
  ): Promise<Page<MessageRecord> | null>;

  /** Extends the lease of the given runs owned by `ownerInstance`. */
  renewLeases(ownerInstance: string, runIds: readonly string[], leaseMs: number): Promise<void>;

  /**
   * Takes over runs whose owner's lease expired: a run still `running` is ended `failed` with
   * code `interrupted`; an ended run whose terminal event was never published is returned so
   * the claimer publishes it. Each such run is returned to exactly one claimer, now owned by
   * `claimer` with a fresh lease.
   */
  claimOrphanedRuns(claimer: string, leaseMs: number, limit: number): Promise<RunRecord[]>;

  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;

  /** Releases connections and timers. */
  close(): Promise<void>;
}
