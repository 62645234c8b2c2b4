/**
 * The PostgreSQL {@link ChatStore}: threads, messages, runs and chat ids persist and
 * are shared by every instance.
 *
 * @module
 */
import postgres from "postgres";
import { type Clock, systemClock } from "../_util/clock.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { errorMessage, type Logger, silentLogger } from "../_util/log.ts";
import type { RunStatus } from "../protocol/mod.ts";
import type {
  BeginChatInput,
  BeginChatResult,
  ChatStore,
  HistoryRequest,
  HistoryTurn,
  MessageRecord,
  Page,
  PageRequest,
  RunOutcome,
  RunRecord,
  ThreadRecord,
} from "./chat_store.ts";
import { checkLimit, decodeCursor, encodeCursor } from "./_cursor.ts";
import {
  checkCountArgument,
  checkPositive,
  DEFAULT_CHAT_ID_TTL_SECONDS,
  renamedTitle,
  storableUsage,
  threadTitle,
} from "./_chat_rules.ts";
import { migrate, type Migration, MigrationError } from "./migrate.ts";
import { toStoreError } from "./_postgres_errors.ts";
import { explicitConnection } from "./_postgres_connection.ts";

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database` */
  readonly url: string;
  /**
   * Paces the sweep of expired chat ids, and nothing else: every stored time (timestamps,
   * leases, chat id expiry) comes from the database's clock, so instances whose clocks
   * disagree still agree on when a lease ends.
   */
  readonly clock?: Clock;
  /** Where migrations and the first outage are logged. */
  readonly log?: Logger;
  /**
   * How long a chat id stays an idempotency key, in seconds.
   * @default {86400}
   */
  readonly chatIdTtlSeconds?: number;
  /**
   * How often, at most, {@link PostgresStore.claimOrphanedRuns} also deletes expired chat ids,
   * in milliseconds of {@link PostgresStoreOptions.clock}.
   * @default {60000}
   */
  readonly sweepIntervalMs?: number;
  /**
   * Connection pool size.
   * @default {10}
   */
  readonly max?: number;
  /**
   * How long opening a connection may take before the call fails with
   * `DependencyUnavailableError`, in seconds.
   * @default {5}
   */
  readonly connectTimeoutSeconds?: number;
  /**
   * Server-side limit on one statement, in milliseconds; past it the call fails with
   * `DependencyUnavailableError` (migrations are exempt).
   * @default {15000}
   */
  readonly statementTimeoutMs?: number;
  /** The migrations to apply; the shipped files by default (tests pass others). */
  readonly migrations?: readonly Migration[];
}

/**
 * Row of `runs` as postgres.js returns it: columns camelCased by the pool's transform, int8 as
 * string, timestamptz as Date.
 */
interface RunRow {
  id: string;
  userId: string;
  threadId: string;
  chatId: string;
  text: string;
  status: RunStatus;
  startSeq: string | null;
  endSeq: string | null;
  ownerInstance: string;
  reply: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  inputTokens: string | null;
  outputTokens: string | null;
  finishReason: string | null;
  createdAt: Date;
  finishedAt: Date | null;
}

interface ThreadRow {
  id: string;
  title: string;
  position: string;
  createdAt: Date;
  updatedAt: Date;
}

interface MessageRow {
  id: string;
  role: "user" | "assistant";
  text: string;
  runId: string;
  seq: string | null;
  position: string;
  createdAt: Date;
  runStatus: RunStatus;
  /** Set only on the assistant message of a failed run. */
  errorCode: string | null;
  errorMessage: string | null;
}

/** Carries a decided outcome out of `sql.begin`, rolling the transaction back. */
class Rollback {
  readonly result: BeginChatResult;
  constructor(result: BeginChatResult) {
    this.result = result;
  }
}

/**
 * A {@link ChatStore} on PostgreSQL.
 *
 * Construction never connects, so the server starts (and reports not ready) while PostgreSQL
 * is down.
 * The first call that reaches PostgreSQL — normally the readiness probe's {@link ping} —
 * applies the migrations first (see `migrate.ts`); until both succeed every call rejects with
 * `DependencyUnavailableError`. A migration that fails for another reason (a SQL error) is
 * fatal: every call from then on rejects with the same {@link MigrationError}, whose message
 * names the file, and start-up should print it and exit.
 *
 * Races are decided by constraints, not by reading first: a unique key on
 * `chat_keys (user_id, chat_id)` and a partial unique index on `runs (thread_id) WHERE status
 * = 'running'`, both written with `ON CONFLICT`, the loser re-reading the winner's row. The
 * one count, a user's runs in flight against `maxActiveRuns`, is taken under a per-user
 * transaction-level advisory lock, so two instances cannot both see room for one more run.
 *
 * Time comes from the database, never from the instance: timestamps are the transaction's
 * `now()`, and leases and chat id expiry are written and compared on the database's clock,
 * so instances whose clocks disagree cannot end each other's healthy runs. Order
 * comes from identity columns the database assigns, never from timestamps.
 *
 * @example Connect and record a chat
 * ```ts ignore
 * import { PostgresStore } from "./postgres_store.ts";
 *
 * await using store = new PostgresStore({ url: Deno.env.get("DATABASE_URL")! });
 * await store.ping(); // migrates on first contact
 * const result = await store.beginChat({
 *   userId: "alice",
 *   chatId: "c1",
 *   text: "hello",
 *   ownerInstance: "i1",
 *   leaseMs: 30_000,
 * });
 * ```
 */
export class PostgresStore implements ChatStore {
  /** Always `postgres`. */
  readonly kind = "postgres" as const;
  #sql: postgres.Sql;
  #clock: Clock;
  #log: Logger;
  #chatIdTtlMs: number;
  #sweepIntervalMs: number;
  /** When the next chat id sweep is due, on `#clock`; the first claim sweeps. */
  #nextSweepAt = -Infinity;
  #migrations: readonly Migration[] | undefined;
  #ready: Promise<void> | null = null;
  #fatal: MigrationError | null = null;

  /**
   * Creates the store and its (lazy) connection pool; connects nothing yet.
   *
   * @throws {RangeError} When a numeric option is not positive.
   * @throws {TypeError} When `url` is not a PostgreSQL URL.
   */
  constructor(options: PostgresStoreOptions) {
    const what = "PostgreSQL store";
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLogger;
    this.#chatIdTtlMs = checkPositive(
      what,
      "chatIdTtlSeconds",
      options.chatIdTtlSeconds ?? DEFAULT_CHAT_ID_TTL_SECONDS,
    ) * 1000;
    this.#sweepIntervalMs = checkPositive(
      what,
      "sweepIntervalMs",
      options.sweepIntervalMs ?? 60_000,
    );
    this.#migrations = options.migrations;
    // The URL may carry a password: never quote it in an error.
    const protocol = URL.canParse(options.url) ? new URL(options.url).protocol : null;
    if (protocol !== "postgres:" && protocol !== "postgresql:") {
      throw new TypeError(
        `Cannot create ${what}: "url" must be a postgres:// URL, received ${
          protocol === null ? "something that is not a URL" : `a ${protocol} URL`
        }`,
      );
    }
    this.#sql = postgres(options.url, {
      // Nothing from PG* variables: an application embedding us may have them for its own database.
      ...explicitConnection(options.url),
      max: checkPoolSize(options.max ?? 10),
      connect_timeout: checkPositive(
        what,
        "connectTimeoutSeconds",
        options.connectTimeoutSeconds ?? 5,
      ),
      idle_timeout: 30,
      onnotice: () => {},
      transform: { column: { from: postgres.toCamel } },
      connection: {
        application_name: "agentsocket",
        statement_timeout: checkPositive(
          what,
          "statementTimeoutMs",
          options.statementTimeoutMs ?? 15_000,
        ),
      },
    });
  }

  /**
   * Creates a store and waits until it answers with its migrations applied.
   *
   * @throws {DependencyUnavailableError} When PostgreSQL cannot be reached (the pool is closed).
   * @throws {MigrationError} When a migration fails.
   */
  static async connect(options: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(options);
    try {
      await store.ping();
      return store;
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  /** {@inheritDoc ChatStore.beginChat} */
  async beginChat(input: BeginChatInput): Promise<BeginChatResult> {
    checkCountArgument("record chat", "maxActiveRuns", input.maxActiveRuns ?? 0);
    if (!isStorableId(input.userId) || !isStorableId(input.chatId)) {
      throw new RangeError(
        `Cannot record chat: "userId" and "chatId" must not contain NUL or unpaired surrogates`,
      );
    }
    if (input.threadId !== undefined && !isStorableId(input.threadId)) {
      return { kind: "not_found" }; // no stored id holds one
    }
    return await this.#query(async (sql) => {
      // A key row can vanish between our conflict and our read (abandonChat): try again.
      for (let attempt = 1;; attempt++) {
        const result = await this.#tryBeginChat(sql, input);
        if (result !== null) return result;
        if (attempt === 5) {
          throw new Error(`Cannot record chat "${input.chatId}": its key kept changing`);
        }
      }
    });
  }

  async #tryBeginChat(sql: postgres.Sql, input: BeginChatInput): Promise<BeginChatResult | null> {
    const runId = crypto.randomUUID();
    const threadId = input.threadId ?? crypto.randomUUID();
    const { userId, chatId } = input;
    const text = storableText(input.text);
    try {
      return await sql.begin(async (tx) => {
        // The key decides first: a concurrent chat with this id waits here for ours.
        const claimed = await tx`
          INSERT INTO chat_keys AS k (user_id, chat_id, run_id, thread_id, text, expires_at)
          VALUES (${userId}, ${chatId}, ${runId}, ${threadId}, ${text},
                  now() + ${millis(tx, this.#chatIdTtlMs)})
          ON CONFLICT (user_id, chat_id) DO UPDATE
            SET run_id = excluded.run_id, thread_id = excluded.thread_id,
                text = excluded.text, expires_at = excluded.expires_at
            WHERE k.expires_at <= now()
          RETURNING 1`;
        if (claimed.length === 0) {
          const [key] = await tx<
            { threadId: string; runId: string; text: string; status: RunStatus }[]
          >`
            SELECT k.thread_id, k.run_id, k.text, r.status
            FROM chat_keys k JOIN runs r ON r.id = k.run_id
            WHERE k.user_id = ${userId} AND k.chat_id = ${chatId}`;
          if (key === undefined) return null;
          const sameThread = input.threadId === undefined || input.threadId === key.threadId;
          if (key.text !== text || !sameThread) return { kind: "idempotency_conflict" } as const;
          return {
            kind: "duplicate",
            threadId: key.threadId,
            runId: key.runId,
            status: key.status,
          } as const;
        }

        if (input.threadId !== undefined) {
          // Locks the thread row: concurrent chats on it queue here.
          const owned = await tx`
            UPDATE threads SET updated_at = now()
            WHERE id = ${threadId} AND user_id = ${userId}
            RETURNING id`;
          if (owned.length === 0) throw new Rollback({ kind: "not_found" });
        } else {
          await tx`
            INSERT INTO threads (id, user_id, title, created_at, updated_at)
            VALUES (${threadId}, ${userId}, ${threadTitle(text)}, now(), now())`;
        }

        const [run] = await tx<RunRow[]>`
          INSERT INTO runs (id, user_id, thread_id, chat_id, text, status, owner_instance,
                            lease_until, created_thread, created_at)
          VALUES (${runId}, ${userId}, ${threadId}, ${chatId}, ${text}, 'running',
                  ${input.ownerInstance}, ${leaseUntil(tx, input.leaseMs)},
                  ${input.threadId === undefined}, now())
          ON CONFLICT (thread_id) WHERE status = 'running' DO NOTHING
          RETURNING *`;
        if (run === undefined) throw new Rollback({ kind: "thread_busy" });

        const maxActiveRuns = input.maxActiveRuns ?? 0;
        if (maxActiveRuns > 0) {
          // One user's chats count one at a time, whichever instance they reach: the lock is
          // held to commit, so the next count sees this run. Taken last, after every row
          // lock of this chat, so its holder never waits for another chat's rows.
          await tx`SELECT pg_advisory_xact_lock(${ACTIVE_RUNS_LOCK_CLASS}::int4, hashtext(${userId}))`;
          // A lapsed lease is a dead owner's run: it does not count (the reaper ends it).
          const [{ others }] = await tx<{ others: number }[]>`
            SELECT count(*)::int AS others FROM runs
            WHERE user_id = ${userId} AND status = 'running' AND id <> ${runId}
              AND lease_until > statement_timestamp()`;
          if (others >= maxActiveRuns) throw new Rollback({ kind: "too_many_runs" });
        }

        await tx`
          INSERT INTO messages (id, thread_id, user_id, run_id, role, text, created_at)
          VALUES (${crypto.randomUUID()}, ${threadId}, ${userId}, ${runId}, 'user', ${text},
                  now())`;
        return { kind: "started", run: toRunRecord(run) } as const;
      });
    } catch (error) {
      if (error instanceof Rollback) return error.result;
      throw error;
    }
  }

  /** {@inheritDoc ChatStore.abandonChat} */
  async abandonChat(userId: string, runId: string): Promise<void> {
    if (!isStorableId(userId, runId)) return;
    await this.#query(async (sql) => {
      await sql.begin(async (tx) => {
        const [run] = await tx<{ threadId: string; createdThread: boolean }[]>`
          SELECT thread_id, created_thread FROM runs
          WHERE id = ${runId} AND user_id = ${userId}
          FOR UPDATE`;
        if (run === undefined) return;
        // Cascades remove the run's messages and chat key (and the thread's runs).
        if (run.createdThread) {
          await tx`DELETE FROM threads WHERE id = ${run.threadId} AND user_id = ${userId}`;
        } else {
          await tx`DELETE FROM runs WHERE id = ${runId} AND user_id = ${userId}`;
        }
      });
    });
  }

  /** {@inheritDoc ChatStore.recordRunStart} */
  recordRunStart(userId: string, runId: string, seq: number): Promise<void> {
    return this.#recordSeq(userId, runId, seq, "user");
  }

  /** {@inheritDoc ChatStore.recordRunEnd} */
  recordRunEnd(userId: string, runId: string, seq: number): Promise<void> {
    return this.#recordSeq(userId, runId, seq, "assistant");
  }

  #recordSeq(
    userId: string,
    runId: string,
    seq: number,
    role: "user" | "assistant",
  ): Promise<void> {
    if (!isStorableId(userId, runId)) return Promise.resolve();
    return this.#query(async (sql) => {
      const column = sql(role === "user" ? "start_seq" : "end_seq");
      await sql`
        WITH run AS (
          UPDATE runs SET ${column} = ${seq}
          WHERE id = ${runId} AND user_id = ${userId}
          RETURNING id
        )
        UPDATE messages SET seq = ${seq}
        WHERE run_id IN (SELECT id FROM run) AND role = ${role}`;
    });
  }

  /** {@inheritDoc ChatStore.finishRun} */
  async finishRun(userId: string, runId: string, outcome: RunOutcome): Promise<boolean> {
    if (!isStorableId(userId, runId)) return false;
    return await this.#query(async (sql) => {
      const reply = storableText(outcome.reply);
      const error = outcome.status === "failed"
        ? { code: storableText(outcome.error.code), message: storableText(outcome.error.message) }
        : null;
      const usage = storableUsage(outcome.usage);
      const finishReason = outcome.finishReason === undefined
        ? null
        : storableText(outcome.finishReason);
      // One statement: the conditional update, the reply and the thread's touch commit together.
      const [row] = await sql<{ finished: string }[]>`
        WITH finished AS (
          UPDATE runs
          SET status = ${outcome.status}, reply = ${reply}, error_code = ${error?.code ?? null},
              error_message = ${error?.message ?? null},
              input_tokens = ${usage?.inputTokens ?? null}::bigint,
              output_tokens = ${usage?.outputTokens ?? null}::bigint,
              finish_reason = ${finishReason}, finished_at = now()
          WHERE id = ${runId} AND user_id = ${userId} AND status = 'running'
          RETURNING id, thread_id, user_id
        ), reply AS (
          INSERT INTO messages (id, thread_id, user_id, run_id, role, text, created_at)
          SELECT ${crypto.randomUUID()}, thread_id, user_id, id, 'assistant', ${reply}, now()
          FROM finished
        ), touched AS (
          UPDATE threads SET updated_at = now()
          FROM finished WHERE threads.id = finished.thread_id
        )
        SELECT count(*) AS finished FROM finished`;
      return row.finished !== "0";
    });
  }

  /** {@inheritDoc ChatStore.getRun} */
  async getRun(userId: string, runId: string): Promise<RunRecord | null> {
    if (!isStorableId(userId, runId)) return null;
    return await this.#query(async (sql) => {
      const [run] = await sql<RunRow[]>`
        SELECT * FROM runs WHERE id = ${runId} AND user_id = ${userId}`;
      return run === undefined ? null : toRunRecord(run);
    });
  }

  /** {@inheritDoc ChatStore.listThreads} */
  async listThreads(userId: string, page: PageRequest): Promise<Page<ThreadRecord>> {
    checkLimit(page.limit);
    const before = page.before === undefined ? null : decodeCursor("t", page.before);
    if (!isStorableId(userId)) return { items: [] };
    return await this.#query(async (sql) => {
      const rows = await sql<ThreadRow[]>`
        SELECT id, title, position, created_at, updated_at FROM threads
        WHERE user_id = ${userId}
          ${before === null ? sql`` : sql`AND position < ${before.toString()}::bigint`}
        ORDER BY position DESC
        LIMIT ${page.limit + 1}`;
      const items = rows.slice(0, page.limit);
      const more = rows.length > page.limit;
      return pageOf(
        items.map(toThreadRecord),
        more ? encodeCursor("t", items.at(-1)!.position) : null,
      );
    });
  }

  /** {@inheritDoc ChatStore.listMessages} */
  async listMessages(
    userId: string,
    threadId: string,
    page: PageRequest,
  ): Promise<Page<MessageRecord> | null> {
    checkLimit(page.limit);
    const before = page.before === undefined ? null : decodeCursor("m", page.before);
    if (!isStorableId(userId, threadId)) return null;
    return await this.#query(async (sql) => {
      const [thread] = await sql`
        SELECT 1 FROM threads WHERE id = ${threadId} AND user_id = ${userId}`;
      if (thread === undefined) return null;
      // The run is the message's own (same user): its status, and a failed run's error on
      // the assistant's message.
      const rows = await sql<MessageRow[]>`
        SELECT m.id, m.role, m.text, m.run_id, m.seq, m.position, m.created_at,
               r.status AS run_status,
               CASE WHEN m.role = 'assistant' THEN r.error_code END AS error_code,
               CASE WHEN m.role = 'assistant' THEN r.error_message END AS error_message
        FROM messages m JOIN runs r ON r.id = m.run_id AND r.user_id = m.user_id
        WHERE m.thread_id = ${threadId} AND m.user_id = ${userId}
          ${before === null ? sql`` : sql`AND m.position < ${before.toString()}::bigint`}
        ORDER BY m.position DESC
        LIMIT ${page.limit + 1}`;
      const items = rows.slice(0, page.limit).reverse();
      const more = rows.length > page.limit;
      return pageOf(
        items.map(toMessageRecord),
        more ? encodeCursor("m", items[0].position) : null,
      );
    });
  }

  /** {@inheritDoc ChatStore.threadHistory} */
  async threadHistory(
    userId: string,
    threadId: string,
    options: HistoryRequest,
  ): Promise<HistoryTurn[] | null> {
    const limit = checkCountArgument("read thread history", "limit", options.limit);
    if (!isStorableId(userId, threadId, options.beforeRunId)) return null;
    return await this.#query(async (sql) => {
      const [anchor] = await sql<{ position: string }[]>`
        SELECT position FROM messages
        WHERE run_id = ${options.beforeRunId} AND role = 'user'
          AND thread_id = ${threadId} AND user_id = ${userId}`;
      if (anchor === undefined) return null;
      if (limit === 0) return [];
      const rows = await sql<{ role: "user" | "assistant"; text: string; runStatus: RunStatus }[]>`
        SELECT m.role, m.text, r.status AS run_status
        FROM messages m JOIN runs r ON r.id = m.run_id AND r.user_id = m.user_id
        WHERE m.thread_id = ${threadId} AND m.user_id = ${userId}
          AND m.position < ${anchor.position}::bigint
        ORDER BY m.position DESC
        LIMIT ${limit}`;
      return rows.reverse().map((row) => ({
        role: row.role,
        text: row.text,
        runStatus: row.runStatus,
      }));
    });
  }

  /** {@inheritDoc ChatStore.renameThread} */
  async renameThread(
    userId: string,
    threadId: string,
    title: string,
  ): Promise<ThreadRecord | null> {
    const stored = storableText(renamedTitle(title));
    if (!isStorableId(userId, threadId)) return null;
    return await this.#query(async (sql) => {
      const [row] = await sql<ThreadRow[]>`
        UPDATE threads SET title = ${stored}, updated_at = now()
        WHERE id = ${threadId} AND user_id = ${userId}
        RETURNING id, title, position, created_at, updated_at`;
      return row === undefined ? null : toThreadRecord(row);
    });
  }

  /** {@inheritDoc ChatStore.deleteThread} */
  async deleteThread(userId: string, threadId: string): Promise<boolean> {
    if (!isStorableId(userId, threadId)) return false;
    return await this.#query(async (sql) => {
      // Cascades remove the thread's runs, messages and (through its runs) chat keys.
      const deleted = await sql`
        DELETE FROM threads WHERE id = ${threadId} AND user_id = ${userId}`;
      return deleted.count > 0;
    });
  }

  /** {@inheritDoc ChatStore.renewLeases} */
  renewLeases(ownerInstance: string, runIds: readonly string[], leaseMs: number): Promise<void> {
    return this.#query(async (sql) => {
      const ids = runIds.filter((id) => isStorableId(id));
      if (ids.length === 0 || !isStorableId(ownerInstance)) return;
      await sql`
        UPDATE runs SET lease_until = ${leaseUntil(sql, leaseMs)}
        WHERE owner_instance = ${ownerInstance} AND id IN ${sql(ids)}`;
    });
  }

  /**
   * {@inheritDoc ChatStore.claimOrphanedRuns}
   *
   * Leases are compared with the database's clock, never the instance's. At most once per
   * `sweepIntervalMs` it also deletes expired chat ids, after the claim and without failing
   * it.
   */
  claimOrphanedRuns(claimer: string, leaseMs: number, limit: number): Promise<RunRecord[]> {
    return this.#query(async (sql) => {
      if (limit < 1) return [];
      // SKIP LOCKED: concurrent claimers take disjoint rows; a row another claimer updated
      // meanwhile is re-checked against the WHERE clause, so each run goes to one claimer.
      // Only ownership moves: a running run is ended by its claimer, with finishRun.
      const rows = await sql<(RunRow & { lapsed: Date })[]>`
        WITH orphans AS (
          SELECT id, lease_until AS lapsed FROM runs
          WHERE lease_until <= now() AND (status = 'running' OR end_seq IS NULL)
          ORDER BY lease_until
          LIMIT ${limit}
          FOR UPDATE SKIP LOCKED
        )
        UPDATE runs r SET owner_instance = ${claimer}, lease_until = ${leaseUntil(sql, leaseMs)}
        FROM orphans o
        WHERE r.id = o.id
        RETURNING r.*, o.lapsed`;
      rows.sort((a, b) => a.lapsed.getTime() - b.lapsed.getTime() || (a.id < b.id ? -1 : 1));
      await this.#sweepExpiredChatIds(sql);
      return rows.map(toRunRecord);
    });
  }

  /**
   * Deletes expired chat ids, in batches, when a sweep is due. An expired key already counts
   * as absent (beginChat replaces it), so this only keeps `chat_keys` from growing forever;
   * a failure is logged and left to the next sweep.
   */
  async #sweepExpiredChatIds(sql: postgres.Sql): Promise<void> {
    const now = this.#clock.now();
    if (now < this.#nextSweepAt) return;
    this.#nextSweepAt = now + this.#sweepIntervalMs;
    try {
      for (let batch = 1; batch <= SWEEP_MAX_BATCHES; batch++) {
        // SKIP LOCKED: a key a chat is replacing right now, or another instance is sweeping,
        // is left alone; the lock re-checks expires_at against the row's latest version.
        const deleted = await sql`
          DELETE FROM chat_keys
          WHERE (user_id, chat_id) IN (
            SELECT user_id, chat_id FROM chat_keys
            WHERE expires_at <= now()
            ORDER BY expires_at
            LIMIT ${SWEEP_BATCH_SIZE}
            FOR UPDATE SKIP LOCKED
          ) AND expires_at <= now()`;
        if (deleted.count < SWEEP_BATCH_SIZE) return;
      }
    } catch (error) {
      this.#log.warn("could not sweep expired chat ids", { error: errorMessage(error) });
    }
  }

  /**
   * Resolves when PostgreSQL answers and the migrations have been applied (applying them on
   * first contact).
   *
   * @throws {DependencyUnavailableError} While PostgreSQL cannot be reached.
   * @throws {MigrationError} When a migration failed: fatal, see the class doc.
   */
  ping(): Promise<void> {
    return this.#query(async (sql) => {
      await sql`SELECT 1`;
    });
  }

  /**
   * Closes the pool, waiting up to 5 s for queries in flight. Idempotent. After an outage
   * that cut a query mid-flight it takes the full 5 s: postgres.js 3.4.9 keeps such a
   * connection waiting for an answer that never comes (porsager/postgres#1097), and the
   * timeout is what ends it.
   */
  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }

  /** Same as {@link PostgresStore.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs `fn` once the schema is migrated, mapping outages to DependencyUnavailableError. */
  async #query<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
    await this.#whenMigrated();
    try {
      return await fn(this.#sql);
    } catch (error) {
      throw toStoreError(error);
    }
  }

  #whenMigrated(): Promise<void> {
    if (this.#fatal !== null) return Promise.reject(this.#fatal);
    this.#ready ??= migrate(this.#sql, { log: this.#log, migrations: this.#migrations }).then(
      () => {},
      (error: unknown) => {
        this.#ready = null; // retried by the next call
        if (error instanceof MigrationError) {
          this.#fatal = error;
          this.#log.error("migration failed", { error: errorMessage(error) });
          throw error;
        }
        const mapped = toStoreError(error);
        if (mapped instanceof DependencyUnavailableError) throw mapped;
        throw error;
      },
    );
    return this.#ready;
  }
}

/**
 * The first key of the per-user advisory lock that counts runs in flight; the second is the
 * user id's hash. Two-key advisory locks live apart from the one-key migration lock, and a
 * hash shared by two users only makes their chats take turns.
 */
const ACTIVE_RUNS_LOCK_CLASS = 1_634_166_126; // "agen" read as a 32-bit integer

/** Keys deleted per statement of a sweep. */
const SWEEP_BATCH_SIZE = 1_000;

/** Statements per sweep at most, so one claim is never held up for long; the rest wait. */
const SWEEP_MAX_BATCHES = 10;

/**
 * `ms` milliseconds as an SQL interval (fractions kept), to add to the database's clock.
 *
 * @throws {RangeError} When `ms` is not a finite number.
 */
function millis(sql: postgres.ISql, ms: number): postgres.Fragment {
  if (!Number.isFinite(ms)) {
    throw new RangeError(
      `Cannot write a lease or an expiry: the duration must be a finite number of milliseconds, received ${ms}`,
    );
  }
  return sql`(${ms}::float8 * interval '1 millisecond')`;
}

/**
 * A lease that ends `ms` from now on the DATABASE's clock: every instance compares leases
 * with that one clock, so a skewed instance clock can neither shorten another's live lease
 * nor end its healthy run. From the start of the statement that writes it rather
 * than of its transaction (`now()`), so a chat that waited on a lock earlier in its
 * transaction still gets its whole lease; one value for every row the statement writes.
 */
function leaseUntil(sql: postgres.ISql, ms: number): postgres.Fragment {
  return sql`statement_timestamp() + ${millis(sql, ms)}`;
}

function checkPoolSize(max: number): number {
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(
      `Cannot create PostgreSQL store: "max" must be a positive integer, received ${max}`,
    );
  }
  return max;
}

/**
 * PostgreSQL `text` cannot hold NUL, and postgres.js encodes a lone surrogate as U+FFFD: an
 * id with either can match no stored row (ours are UUIDs, user ids come from tokens).
 */
function isStorableId(...ids: string[]): boolean {
  return ids.every((id) => !id.includes("\0") && id.isWellFormed());
}

/**
 * Free text as PostgreSQL will store it: NUL and lone surrogates become U+FFFD. Applied before
 * comparing a repeated chat's text with the stored one, so a retry still matches.
 */
function storableText(text: string): string {
  return text.toWellFormed().replaceAll("\0", "\uFFFD");
}

function pageOf<T>(items: T[], nextCursor: string | null): Page<T> {
  return nextCursor === null ? { items } : { items, nextCursor };
}

function toSeq(value: string | null): number | null {
  return value === null ? null : Number(value);
}

function toRunRecord(row: RunRow): RunRecord {
  return {
    id: row.id,
    userId: row.userId,
    threadId: row.threadId,
    chatId: row.chatId,
    text: row.text,
    status: row.status,
    startSeq: toSeq(row.startSeq),
    endSeq: toSeq(row.endSeq),
    ownerInstance: row.ownerInstance,
    reply: row.reply,
    error: row.errorCode === null ? null : { code: row.errorCode, message: row.errorMessage ?? "" },
    usage: row.inputTokens === null && row.outputTokens === null ? null : {
      inputTokens: Number(row.inputTokens ?? 0),
      outputTokens: Number(row.outputTokens ?? 0),
    },
    finishReason: row.finishReason,
    createdAt: row.createdAt.toISOString(),
    finishedAt: row.finishedAt === null ? null : row.finishedAt.toISOString(),
  };
}

function toThreadRecord(row: ThreadRow): ThreadRecord {
  return {
    id: row.id,
    title: row.title,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

function toMessageRecord(row: MessageRow): MessageRecord {
  const record: MessageRecord = {
    id: row.id,
    role: row.role,
    text: row.text,
    runId: row.runId,
    seq: toSeq(row.seq),
    createdAt: row.createdAt.toISOString(),
    runStatus: row.runStatus,
  };
  if (row.errorCode === null) return record;
  return { ...record, error: { code: row.errorCode, message: row.errorMessage ?? "" } };
}
