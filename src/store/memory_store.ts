/**
 * The embedded {@link ChatStore}: everything in process memory, bounded so a long-running
 * development server cannot grow without limit.
 *
 * @module
 */
import { type Clock, systemClock, type Timer } from "../_util/clock.ts";
import type { RunStatus, Usage } from "../protocol/mod.ts";
import type {
  BeginChatInput,
  BeginChatResult,
  ChatStore,
  HistoryRequest,
  HistoryTurn,
  MessageRecord,
  Page,
  PageRequest,
  RunError,
  RunOutcome,
  RunRecord,
  ThreadRecord,
} from "./chat_store.ts";
import { checkLimit, decodeCursor, encodeCursor } from "./_cursor.ts";
import {
  checkCountArgument,
  checkPositive,
  DEFAULT_CHAT_ID_TTL_SECONDS,
  isoTime,
  renamedTitle,
  storableUsage,
  threadTitle,
} from "./_chat_rules.ts";

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Source of time for timestamps, leases, key expiry and the idle sweep. */
  readonly clock?: Clock;
  /**
   * How long a chat id stays an idempotency key, in seconds.
   * @default {86400}
   */
  readonly chatIdTtlSeconds?: number;
  /**
   * Threads kept per user; beyond it the oldest thread without a running run is dropped,
   * with its messages and runs.
   * @default {100}
   */
  readonly maxThreadsPerUser?: number;
  /**
   * Messages kept per thread; beyond it the oldest is dropped.
   * @default {1000}
   */
  readonly maxMessagesPerThread?: number;
  /**
   * A user with no store call for this long and no running run is forgotten entirely.
   * @default {86400}
   */
  readonly idleUserSeconds?: number;
  /**
   * How often the idle sweep runs (it also drops expired chat ids), in milliseconds.
   * @default {60000}
   */
  readonly sweepIntervalMs?: number;
}

interface MessageState {
  readonly id: string;
  readonly role: "user" | "assistant";
  readonly text: string;
  /** Its run, whose status the message shows (a run is dropped only with its last message). */
  readonly run: RunState;
  seq: number | null;
  readonly createdAt: number;
  readonly position: number;
}

interface ThreadState {
  readonly id: string;
  title: string;
  readonly createdAt: number;
  updatedAt: number;
  readonly position: number;
  /** Oldest first. */
  readonly messages: MessageState[];
  readonly runIds: Set<string>;
  runningRunId: string | null;
}

interface RunState {
  readonly id: string;
  readonly userId: string;
  readonly threadId: string;
  readonly chatId: string;
  readonly text: string;
  readonly createdThread: boolean;
  status: RunStatus;
  startSeq: number | null;
  endSeq: number | null;
  ownerInstance: string;
  leaseUntil: number;
  reply: string | null;
  error: RunError | null;
  usage: Usage | null;
  finishReason: string | null;
  readonly createdAt: number;
  finishedAt: number | null;
}

interface ChatKeyState {
  readonly runId: string;
  readonly threadId: string;
  readonly text: string;
  readonly expiresAt: number;
}

interface UserState {
  /** In creation order, oldest first. */
  readonly threads: Map<string, ThreadState>;
  readonly keys: Map<string, ChatKeyState>;
  lastActiveAt: number;
}

/**
 * A {@link ChatStore} in process memory: the embedded default for development.
 * Every method decides synchronously before its promise settles, so each call is atomic.
 * Bounded: per-user threads, per-thread messages, and idle users are swept by a timer on the
 * injected clock, which {@link MemoryStore.close} cancels.
 *
 * @example Record a chat
 * ```ts
 * import { MemoryStore } from "./memory_store.ts";
 *
 * const store = new MemoryStore();
 * const result = await store.beginChat({
 *   userId: "alice",
 *   chatId: "c1",
 *   text: "hello",
 *   ownerInstance: "i1",
 *   leaseMs: 30_000,
 * });
 * if (result.kind !== "started") throw new Error("expected a new run");
 * await store.close();
 * ```
 */
export class MemoryStore implements ChatStore {
  /** Always `memory`. */
  readonly kind = "memory" as const;
  #clock: Clock;
  #chatIdTtlMs: number;
  #maxThreads: number;
  #maxMessages: number;
  #idleUserMs: number;
  #sweepIntervalMs: number;
  #users = new Map<string, UserState>();
  #runs = new Map<string, RunState>();
  #position = 0;
  #sweepTimer: Timer | null = null;
  #closed = false;

  /**
   * Creates an empty store.
   *
   * @throws {RangeError} When a bound or duration option is not positive.
   */
  constructor(options: MemoryStoreOptions = {}) {
    const what = "memory store";
    this.#clock = options.clock ?? systemClock;
    this.#chatIdTtlMs = checkPositive(
      what,
      "chatIdTtlSeconds",
      options.chatIdTtlSeconds ?? DEFAULT_CHAT_ID_TTL_SECONDS,
    ) * 1000;
    this.#maxThreads = checkCount(what, "maxThreadsPerUser", options.maxThreadsPerUser ?? 100);
    this.#maxMessages = checkCount(
      what,
      "maxMessagesPerThread",
      options.maxMessagesPerThread ?? 1000,
    );
    this.#idleUserMs = checkPositive(what, "idleUserSeconds", options.idleUserSeconds ?? 86_400) *
      1000;
    this.#sweepIntervalMs = checkPositive(
      what,
      "sweepIntervalMs",
      options.sweepIntervalMs ?? 60_000,
    );
  }

  /** Number of users currently held (for tests and metrics). */
  get userCount(): number {
    return this.#users.size;
  }

  /** {@inheritDoc ChatStore.beginChat} */
  beginChat(input: BeginChatInput): Promise<BeginChatResult> {
    return settle(() => {
      const maxActiveRuns = checkCountArgument(
        "record chat",
        "maxActiveRuns",
        input.maxActiveRuns ?? 0,
      );
      const now = this.#clock.now();
      const user = this.#user(input.userId, true);
      const key = user.keys.get(input.chatId);
      if (key !== undefined && key.expiresAt > now && this.#runs.has(key.runId)) {
        const sameThread = input.threadId === undefined || input.threadId === key.threadId;
        if (key.text !== input.text || !sameThread) {
          return { kind: "idempotency_conflict" };
        }
        const run = this.#runs.get(key.runId)!;
        return {
          kind: "duplicate",
          threadId: key.threadId,
          runId: key.runId,
          status: run.status,
        };
      }

      let thread: ThreadState;
      const existing = input.threadId === undefined ? undefined : user.threads.get(input.threadId);
      if (input.threadId !== undefined) {
        if (existing === undefined) return { kind: "not_found" };
        if (existing.runningRunId !== null) return { kind: "thread_busy" };
      }
      if (maxActiveRuns > 0 && this.#activeRuns(user, now) >= maxActiveRuns) {
        return { kind: "too_many_runs" };
      }
      if (existing !== undefined) {
        thread = existing;
        thread.updatedAt = now;
      } else {
        this.#makeRoomForThread(user);
        thread = {
          id: crypto.randomUUID(),
          title: threadTitle(input.text),
          createdAt: now,
          updatedAt: now,
          position: ++this.#position,
          messages: [],
          runIds: new Set(),
          runningRunId: null,
        };
        user.threads.set(thread.id, thread);
      }

      const run: RunState = {
        id: crypto.randomUUID(),
        userId: input.userId,
        threadId: thread.id,
        chatId: input.chatId,
        text: input.text,
        createdThread: input.threadId === undefined,
        status: "running",
        startSeq: null,
        endSeq: null,
        ownerInstance: input.ownerInstance,
        leaseUntil: now + input.leaseMs,
        reply: null,
        error: null,
        usage: null,
        finishReason: null,
        createdAt: now,
        finishedAt: null,
      };
      this.#runs.set(run.id, run);
      thread.runIds.add(run.id);
      thread.runningRunId = run.id;
      user.keys.set(input.chatId, {
        runId: run.id,
        threadId: thread.id,
        text: input.text,
        expiresAt: now + this.#chatIdTtlMs,
      });
      this.#addMessage(user, thread, "user", input.text, run, now);
      return { kind: "started", run: toRunRecord(run) };
    });
  }

  /** {@inheritDoc ChatStore.abandonChat} */
  abandonChat(userId: string, runId: string): Promise<void> {
    return settle(() => {
      const run = this.#ownRun(userId, runId);
      const user = this.#user(userId, false);
      if (run === undefined || user === undefined) return;
      const thread = user.threads.get(run.threadId);
      if (run.createdThread && thread !== undefined) {
        this.#dropThread(user, thread);
        return;
      }
      this.#dropRun(user, run);
      if (thread !== undefined) {
        removeWhere(thread.messages, (m) => m.run === run);
        thread.runIds.delete(runId);
        if (thread.runningRunId === runId) thread.runningRunId = null;
      }
    });
  }

  /** {@inheritDoc ChatStore.recordRunStart} */
  recordRunStart(userId: string, runId: string, seq: number): Promise<void> {
    return settle(() => {
      const run = this.#ownRun(userId, runId);
      if (run !== undefined) {
        run.startSeq = seq;
        this.#setMessageSeq(run, "user", seq);
      }
    });
  }

  /** {@inheritDoc ChatStore.finishRun} */
  finishRun(userId: string, runId: string, outcome: RunOutcome): Promise<boolean> {
    return settle(() => {
      const run = this.#ownRun(userId, runId);
      if (run === undefined || run.status !== "running") return false;
      const now = this.#clock.now();
      run.status = outcome.status;
      run.reply = outcome.reply;
      run.error = outcome.status === "failed"
        ? { code: outcome.error.code, message: outcome.error.message }
        : null;
      run.usage = storableUsage(outcome.usage);
      run.finishReason = outcome.finishReason ?? null;
      run.finishedAt = now;
      const user = this.#user(userId, true);
      const thread = user.threads.get(run.threadId);
      if (thread !== undefined) {
        if (thread.runningRunId === run.id) thread.runningRunId = null;
        thread.updatedAt = now;
        this.#addMessage(user, thread, "assistant", outcome.reply, run, now);
      }
      return true;
    });
  }

  /** {@inheritDoc ChatStore.recordRunEnd} */
  recordRunEnd(userId: string, runId: string, seq: number): Promise<void> {
    return settle(() => {
      const run = this.#ownRun(userId, runId);
      if (run !== undefined) {
        run.endSeq = seq;
        this.#setMessageSeq(run, "assistant", seq);
      }
    });
  }

  /** {@inheritDoc ChatStore.getRun} */
  getRun(userId: string, runId: string): Promise<RunRecord | null> {
    return settle(() => {
      const run = this.#ownRun(userId, runId);
      return run === undefined ? null : toRunRecord(run);
    });
  }

  /** {@inheritDoc ChatStore.listThreads} */
  listThreads(userId: string, page: PageRequest): Promise<Page<ThreadRecord>> {
    return settle(() => {
      checkLimit(page.limit);
      const before = page.before === undefined ? null : decodeCursor("t", page.before);
      const user = this.#user(userId, false);
      if (user === undefined) return { items: [] };
      const items: ThreadState[] = [];
      let more = false;
      for (const thread of [...user.threads.values()].reverse()) {
        if (before !== null && BigInt(thread.position) >= before) continue;
        if (items.length === page.limit) {
          more = true;
          break;
        }
        items.push(thread);
      }
      return pageOf(
        items.map(toThreadRecord),
        more ? encodeCursor("t", items.at(-1)!.position) : null,
      );
    });
  }

  /** {@inheritDoc ChatStore.listMessages} */
  listMessages(
    userId: string,
    threadId: string,
    page: PageRequest,
  ): Promise<Page<MessageRecord> | null> {
    return settle(() => {
      checkLimit(page.limit);
      const before = page.before === undefined ? null : decodeCursor("m", page.before);
      const thread = this.#user(userId, false)?.threads.get(threadId);
      if (thread === undefined) return null;
      const older = before === null
        ? thread.messages
        : thread.messages.filter((m) => BigInt(m.position) < before);
      const items = older.slice(Math.max(0, older.length - page.limit));
      const more = older.length > items.length;
      return pageOf(
        items.map(toMessageRecord),
        more ? encodeCursor("m", items[0].position) : null,
      );
    });
  }

  /** {@inheritDoc ChatStore.threadHistory} */
  threadHistory(
    userId: string,
    threadId: string,
    options: HistoryRequest,
  ): Promise<HistoryTurn[] | null> {
    return settle(() => {
      const limit = checkCountArgument("read thread history", "limit", options.limit);
      const thread = this.#user(userId, false)?.threads.get(threadId);
      if (thread === undefined) return null;
      const end = thread.messages.findIndex((m) =>
        m.run.id === options.beforeRunId && m.role === "user"
      );
      if (end === -1) return null;
      return thread.messages.slice(Math.max(0, end - limit), end).map((m) => ({
        role: m.role,
        text: m.text,
        runStatus: m.run.status,
      }));
    });
  }

  /** {@inheritDoc ChatStore.renameThread} */
  renameThread(userId: string, threadId: string, title: string): Promise<ThreadRecord | null> {
    return settle(() => {
      const stored = renamedTitle(title);
      const thread = this.#user(userId, false)?.threads.get(threadId);
      if (thread === undefined) return null;
      thread.title = stored;
      thread.updatedAt = this.#clock.now();
      return toThreadRecord(thread);
    });
  }

  /** {@inheritDoc ChatStore.deleteThread} */
  deleteThread(userId: string, threadId: string): Promise<boolean> {
    return settle(() => {
      const user = this.#user(userId, false);
      const thread = user?.threads.get(threadId);
      if (user === undefined || thread === undefined) return false;
      this.#dropThread(user, thread);
      return true;
    });
  }

  /** {@inheritDoc ChatStore.renewLeases} */
  renewLeases(ownerInstance: string, runIds: readonly string[], leaseMs: number): Promise<void> {
    return settle(() => {
      const leaseUntil = this.#clock.now() + leaseMs;
      for (const runId of runIds) {
        const run = this.#runs.get(runId);
        if (run !== undefined && run.ownerInstance === ownerInstance) run.leaseUntil = leaseUntil;
      }
    });
  }

  /** {@inheritDoc ChatStore.claimOrphanedRuns} */
  claimOrphanedRuns(claimer: string, leaseMs: number, limit: number): Promise<RunRecord[]> {
    return settle(() => {
      const now = this.#clock.now();
      const orphans = [...this.#runs.values()]
        .filter((run) => run.leaseUntil <= now && (run.status === "running" || run.endSeq === null))
        .sort((a, b) => a.leaseUntil - b.leaseUntil)
        .slice(0, Math.max(0, limit));
      for (const run of orphans) {
        // A running one stays running: the claimer ends it with finishRun.
        run.ownerInstance = claimer;
        run.leaseUntil = now + leaseMs;
      }
      return orphans.map(toRunRecord);
    });
  }

  /** Resolves at once: memory always answers. */
  ping(): Promise<void> {
    return Promise.resolve();
  }

  /** Cancels the sweep timer. Idempotent; the data stays readable. */
  close(): Promise<void> {
    this.#closed = true;
    this.#sweepTimer?.cancel();
    this.#sweepTimer = null;
    return Promise.resolve();
  }

  /** Same as {@link MemoryStore.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The user's state, marked active; created only when `create` (reads never create). */
  #user(userId: string, create: true): UserState;
  #user(userId: string, create: false): UserState | undefined;
  #user(userId: string, create: boolean): UserState | undefined {
    let user = this.#users.get(userId);
    if (user === undefined && create) {
      user = { threads: new Map(), keys: new Map(), lastActiveAt: 0 };
      this.#users.set(userId, user);
      this.#scheduleSweep();
    }
    if (user !== undefined) user.lastActiveAt = this.#clock.now();
    return user;
  }

  #ownRun(userId: string, runId: string): RunState | undefined {
    const run = this.#runs.get(runId);
    if (run === undefined || run.userId !== userId) return undefined;
    this.#user(userId, false);
    return run;
  }

  /** The user's runs in flight whose lease has not lapsed at `now`. */
  #activeRuns(user: UserState, now: number): number {
    let count = 0;
    for (const thread of user.threads.values()) {
      const run = thread.runningRunId === null ? undefined : this.#runs.get(thread.runningRunId);
      if (run !== undefined && run.leaseUntil > now) count++;
    }
    return count;
  }

  #setMessageSeq(run: RunState, role: "user" | "assistant", seq: number): void {
    const thread = this.#users.get(run.userId)?.threads.get(run.threadId);
    const message = thread?.messages.find((m) => m.run === run && m.role === role);
    if (message !== undefined) message.seq = seq;
  }

  #addMessage(
    user: UserState,
    thread: ThreadState,
    role: "user" | "assistant",
    text: string,
    run: RunState,
    now: number,
  ): void {
    thread.messages.push({
      id: crypto.randomUUID(),
      role,
      text,
      run,
      seq: null,
      createdAt: now,
      position: ++this.#position,
    });
    while (thread.messages.length > this.#maxMessages) {
      const { run: old } = thread.messages.shift()!;
      // A finished run with no message left is forgotten too, so runs stay bounded.
      if (old.status !== "running" && !thread.messages.some((m) => m.run === old)) {
        this.#dropRun(user, old);
        thread.runIds.delete(old.id);
      }
    }
  }

  /** Drops the user's oldest thread without a running run when the user is at the bound. */
  #makeRoomForThread(user: UserState): void {
    if (user.threads.size < this.#maxThreads) return;
    for (const thread of user.threads.values()) {
      if (thread.runningRunId === null) {
        this.#dropThread(user, thread);
        return;
      }
    }
    // Every thread has a run in flight: exceed the bound until one ends.
  }

  #dropThread(user: UserState, thread: ThreadState): void {
    for (const runId of thread.runIds) {
      const run = this.#runs.get(runId);
      if (run !== undefined) this.#dropRun(user, run);
    }
    user.threads.delete(thread.id);
  }

  #dropRun(user: UserState, run: RunState): void {
    this.#runs.delete(run.id);
    if (user.keys.get(run.chatId)?.runId === run.id) user.keys.delete(run.chatId);
  }

  #scheduleSweep(): void {
    if (this.#closed || this.#sweepTimer !== null) return;
    this.#sweepTimer = this.#clock.setTimer(() => {
      this.#sweepTimer = null;
      this.#sweep();
      if (this.#users.size > 0) this.#scheduleSweep();
    }, this.#sweepIntervalMs);
  }

  /** Forgets idle users without a running run, and expired chat ids. */
  #sweep(): void {
    const now = this.#clock.now();
    for (const [userId, user] of this.#users) {
      const running = [...user.threads.values()].some((t) => t.runningRunId !== null);
      if (!running && now - user.lastActiveAt >= this.#idleUserMs) {
        for (const thread of user.threads.values()) this.#dropThread(user, thread);
        this.#users.delete(userId);
        continue;
      }
      for (const [chatId, key] of user.keys) {
        if (key.expiresAt <= now) user.keys.delete(chatId);
      }
    }
  }
}

/** Runs `fn` now, turning a throw into a rejection so callers see one failure path. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (error) {
    return Promise.reject(error);
  }
}

function checkCount(what: string, name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create ${what}: "${name}" must be a positive integer, received ${value}`,
    );
  }
  return value;
}

function removeWhere<T>(items: T[], predicate: (item: T) => boolean): void {
  for (let i = items.length - 1; i >= 0; i--) {
    if (predicate(items[i])) items.splice(i, 1);
  }
}

function pageOf<T>(items: T[], nextCursor: string | null): Page<T> {
  return nextCursor === null ? { items } : { items, nextCursor };
}

function toRunRecord(run: RunState): RunRecord {
  return {
    id: run.id,
    userId: run.userId,
    threadId: run.threadId,
    chatId: run.chatId,
    text: run.text,
    status: run.status,
    startSeq: run.startSeq,
    endSeq: run.endSeq,
    ownerInstance: run.ownerInstance,
    reply: run.reply,
    error: run.error === null ? null : { ...run.error },
    usage: run.usage === null ? null : { ...run.usage },
    finishReason: run.finishReason,
    createdAt: isoTime(run.createdAt),
    finishedAt: run.finishedAt === null ? null : isoTime(run.finishedAt),
  };
}

function toThreadRecord(thread: ThreadState): ThreadRecord {
  return {
    id: thread.id,
    title: thread.title,
    createdAt: isoTime(thread.createdAt),
    updatedAt: isoTime(thread.updatedAt),
  };
}

function toMessageRecord(message: MessageState): MessageRecord {
  const { run } = message;
  const record: MessageRecord = {
    id: message.id,
    role: message.role,
    text: message.text,
    runId: run.id,
    seq: message.seq,
    createdAt: isoTime(message.createdAt),
    runStatus: run.status,
  };
  if (message.role !== "assistant" || run.error === null) return record;
  return { ...record, error: { code: run.error.code, message: run.error.message } };
}
