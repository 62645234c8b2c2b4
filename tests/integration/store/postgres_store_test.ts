import assert from "node:assert/strict";
import postgres from "postgres";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import {
  loadMigrations,
  migrate,
  MIGRATION_FILES,
  MigrationError,
} from "../../../src/store/migrate.ts";
import { PostgresStore, type PostgresStoreOptions } from "../../../src/store/postgres_store.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { createTestDatabase, freePort } from "../../_helpers/services.ts";
import { realStoreTime, registerChatStoreConformance } from "../../_helpers/store_conformance.ts";

const HOUR_MS = 3_600_000;

registerChatStoreConformance("PostgresStore", async ({ chatIdTtlSeconds }) => {
  const db = await createTestDatabase();
  // The instance's clock is a day off and never moves: the suite checks every stored time,
  // lease and expiry against the database's clock, so any use of this one fails it.
  const clock = new ManualClock(Date.now() - 24 * HOUR_MS);
  const store = new PostgresStore({ url: db.url, clock, chatIdTtlSeconds });
  const sql = admin(db.url);
  return {
    store,
    time: realStoreTime(() => databaseNow(sql)),
    async [Symbol.asyncDispose]() {
      await store.close();
      await sql.end();
      await db[Symbol.asyncDispose]();
    },
  };
});

const LEASE_MS = 30_000;

/** A test database with a store on it, both released on dispose. */
async function storeOnTestDatabase(
  options: Omit<PostgresStoreOptions, "url"> = {},
): Promise<{ store: PostgresStore; url: string } & AsyncDisposable> {
  const db = await createTestDatabase();
  const store = new PostgresStore({ url: db.url, ...options });
  return {
    store,
    url: db.url,
    async [Symbol.asyncDispose]() {
      await store.close();
      await db[Symbol.asyncDispose]();
    },
  };
}

/** A one-connection client for checking the database directly. */
function admin(url: string): postgres.Sql & AsyncDisposable {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  return Object.assign(sql, { [Symbol.asyncDispose]: () => sql.end() });
}

/** The database's clock, in epoch milliseconds. */
async function databaseNow(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ now: Date }[]>`SELECT clock_timestamp() AS now`;
  return row.now.getTime();
}

function chat(store: PostgresStore, userId: string, chatId: string, threadId?: string) {
  return store.beginChat({
    userId,
    chatId,
    text: `text of ${chatId}`,
    ...(threadId === undefined ? {} : { threadId }),
    ownerInstance: "instance-a",
    leaseMs: LEASE_MS,
  });
}

// Migrations

Deno.test("migrate() applies the shipped files once and is a no-op the second time", async () => {
  await using db = await createTestDatabase();
  await using sql = admin(db.url);
  assert.deepEqual(await migrate(sql), MIGRATION_FILES);
  assert.deepEqual(await migrate(sql), []);
  const rows = await sql`SELECT name FROM schema_migrations ORDER BY name`;
  assert.deepEqual(rows.map((r) => r.name), MIGRATION_FILES);
});

Deno.test("migrate() applies each file exactly once when run from many pools at once", async () => {
  await using db = await createTestDatabase();
  const pools = Array.from({ length: 6 }, () => postgres(db.url, { max: 3, onnotice: () => {} }));
  try {
    const results = await Promise.all(pools.map((sql) => migrate(sql)));
    assert.deepEqual(results.flat().sort(), MIGRATION_FILES);
  } finally {
    await Promise.all(pools.map((sql) => sql.end()));
  }
  await using sql = admin(db.url);
  assert.deepEqual(
    (await sql`SELECT count(*)::int AS n FROM schema_migrations`)[0].n,
    MIGRATION_FILES.length,
  );
});

Deno.test("PostgresStore.ping() migrates once when several stores start together", async () => {
  await using db = await createTestDatabase();
  const stores = Array.from({ length: 5 }, () => new PostgresStore({ url: db.url, max: 2 }));
  try {
    await Promise.all(stores.map((store) => store.ping()));
    await Promise.all(stores.map((store) => store.ping()));
  } finally {
    await Promise.all(stores.map((store) => store.close()));
  }
  await using sql = admin(db.url);
  const rows = await sql`SELECT name FROM schema_migrations ORDER BY name`;
  assert.deepEqual(rows.map((r) => r.name), MIGRATION_FILES);
});

Deno.test("PostgresStore.ping() upgrades a database that has only 0001_init.sql", async () => {
  await using db = await createTestDatabase();
  const [first] = await loadMigrations();
  {
    await using before = new PostgresStore({ url: db.url, migrations: [first] });
    assert.equal((await chat(before, "alice", "c1")).kind, "started");
  }
  await using store = new PostgresStore({ url: db.url });
  await store.ping();
  const repeat = await chat(store, "alice", "c1");
  assert.equal(repeat.kind, "duplicate");
  // A run stored before the upgrade takes a v3 ending.
  const usage = { inputTokens: 7, outputTokens: 3 };
  const ending = { status: "completed", reply: "r", usage, finishReason: "stop" } as const;
  assert.equal(await store.finishRun("alice", repeat.runId, ending), true);
  const run = await store.getRun("alice", repeat.runId);
  assert.deepEqual([run?.usage, run?.finishReason], [usage, "stop"]);
  await using sql = admin(db.url);
  const rows = await sql`SELECT name FROM schema_migrations ORDER BY name`;
  assert.deepEqual(rows.map((r) => r.name), MIGRATION_FILES);
});

Deno.test("PostgresStore.ping() rejects with a MigrationError naming the failed file, for good", async () => {
  await using db = await createTestDatabase();
  const migrations = [
    ...await loadMigrations(),
    { name: "9999_broken.sql", sql: "CREATE TABLE broken (id int);\nCREATE TABLE oops (;" },
  ];
  await using store = new PostgresStore({ url: db.url, migrations });
  const error = await store.ping().then(() => null, (e: unknown) => e);
  assert.ok(error instanceof MigrationError, `expected a MigrationError, got ${error}`);
  assert.equal(error.file, "9999_broken.sql");
  assert.match(
    error.message,
    /^Migration "9999_broken\.sql" failed: syntax error .*SQLSTATE 42601/,
  );
  // Fatal: not retried, every call reports it.
  assert.equal(await store.ping().catch((e) => e), error);
  await assert.rejects(() => chat(store, "alice", "c1"), MigrationError);
  // The failed file left nothing behind; the ones before it stay applied.
  await using sql = admin(db.url);
  assert.deepEqual(
    (await sql`SELECT name FROM schema_migrations ORDER BY name`).map((r) => r.name),
    MIGRATION_FILES,
  );
  assert.equal((await sql`SELECT to_regclass('broken') AS t`)[0].t, null);
});

Deno.test("PostgresStore.connect() resolves with a migrated store", async () => {
  await using db = await createTestDatabase();
  await using store = await PostgresStore.connect({ url: db.url });
  assert.equal((await chat(store, "alice", "c1")).kind, "started");
});

// Availability: down at start, lost mid-flight, back again

Deno.test("PostgresStore.ping() fails while PostgreSQL is down and recovers when it is back", async () => {
  await using db = await createTestDatabase();
  await using proxy = new TcpProxy(new URL(db.url));
  const url = new URL(db.url);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  await using store = new PostgresStore({ url: url.href, connectTimeoutSeconds: 2 });

  // Down at start: construction succeeded, calls fail as unavailable, nothing stored.
  await assert.rejects(() => store.ping(), DependencyUnavailableError);
  await assert.rejects(() => chat(store, "alice", "c1"), (error: unknown) => {
    assert.ok(error instanceof DependencyUnavailableError);
    assert.equal(error.dependency, "postgres");
    return true;
  });

  // Up: migrates on first contact and serves.
  proxy.start();
  await store.ping();
  const first = await chat(store, "alice", "c1");
  assert.equal(first.kind, "started");

  // Lost mid-flight: unavailable, not a crash.
  await proxy.stop();
  await assert.rejects(() => store.getRun("alice", "missing"), DependencyUnavailableError);
  await assert.rejects(() => store.ping(), DependencyUnavailableError);

  // Back again.
  proxy.start();
  await store.ping();
  assert.equal((await chat(store, "alice", "c1")).kind, "duplicate");
});

Deno.test("PostgresStore.ping() fails with DependencyUnavailableError when the server never answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn); // accept, never answer
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const store = new PostgresStore({
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    connectTimeoutSeconds: 1,
  });
  try {
    const error = await store.ping().then(() => null, (e: unknown) => e);
    assert.ok(error instanceof DependencyUnavailableError);
    assert.match(error.message, /CONNECT_TIMEOUT/);
  } finally {
    await store.close();
    listener.close();
    for (const conn of accepted) conn.close();
    await accepting;
  }
});

Deno.test("PostgresStore() does not connect and rejects a bad URL", async () => {
  assert.throws(() => new PostgresStore({ url: "not a url" }), TypeError);
  assert.throws(() => new PostgresStore({ url: "mysql://localhost/db" }), TypeError);
  assert.throws(
    () => new PostgresStore({ url: "mysql://user:s3cret@localhost/db" }),
    (error: Error) => error instanceof TypeError && !error.message.includes("s3cret"),
  );
  assert.throws(
    () => new PostgresStore({ url: "postgres://localhost/db", max: 0 }),
    RangeError,
  );
  const store = new PostgresStore({ url: `postgres://postgres@127.0.0.1:${freePort()}/none` });
  await store.close();
});

// Races

Deno.test("PostgresStore.beginChat() starts one run for 20 concurrent chats with one id", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const results = await Promise.all(Array.from({ length: 20 }, () => chat(store, "alice", "c1")));
  const started = results.filter((r) => r.kind === "started");
  assert.equal(started.length, 1);
  const run = started[0].kind === "started" ? started[0].run : undefined;
  for (const result of results) {
    if (result.kind === "started") continue;
    assert.deepEqual(result, {
      kind: "duplicate",
      threadId: run?.threadId,
      runId: run?.id,
      status: "running",
    });
  }
  await using sql = admin(fixture.url);
  const [counts] = await sql`
    SELECT (SELECT count(*)::int FROM threads) AS threads, (SELECT count(*)::int FROM runs) AS runs,
           (SELECT count(*)::int FROM messages) AS messages,
           (SELECT count(*)::int FROM chat_keys) AS keys`;
  assert.deepEqual({ ...counts }, { threads: 1, runs: 1, messages: 1, keys: 1 });
});

Deno.test("PostgresStore.beginChat() starts one run for 20 concurrent chats on one thread", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const first = await chat(store, "alice", "c0");
  assert.equal(first.kind, "started");
  await store.finishRun("alice", first.run.id, { status: "cancelled", reply: "" });
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => chat(store, "alice", `c${i + 1}`, first.run.threadId)),
  );
  assert.equal(results.filter((r) => r.kind === "started").length, 1);
  assert.equal(results.filter((r) => r.kind === "thread_busy").length, 19);
  // The refused chats left no key behind.
  await using sql = admin(fixture.url);
  assert.equal((await sql`SELECT count(*)::int AS n FROM chat_keys`)[0].n, 2);
});

Deno.test("PostgresStore.beginChat() decides one winner across two stores after the TTL", async () => {
  await using db = await createTestDatabase();
  await using a = new PostgresStore({ url: db.url, chatIdTtlSeconds: 60 });
  await using b = new PostgresStore({ url: db.url, chatIdTtlSeconds: 60 });
  const first = await chat(a, "alice", "c1");
  assert.equal(first.kind, "started");
  await a.finishRun("alice", first.run.id, { status: "completed", reply: "r" });
  await using sql = admin(db.url);
  await sql`UPDATE chat_keys SET expires_at = now()`; // as if the 60 s had passed
  const results = await Promise.all([
    ...Array.from({ length: 5 }, () => chat(a, "alice", "c1")),
    ...Array.from({ length: 5 }, () => chat(b, "alice", "c1")),
  ]);
  assert.equal(results.filter((r) => r.kind === "started").length, 1);
  assert.equal(results.filter((r) => r.kind === "duplicate").length, 9);
});

Deno.test("PostgresStore.claimOrphanedRuns() hands each run to one of two stores at once", async () => {
  await using db = await createTestDatabase();
  await using a = new PostgresStore({ url: db.url });
  await using b = new PostgresStore({ url: db.url });
  const runIds: string[] = [];
  for (let i = 0; i < 30; i++) {
    const result = await chat(a, `user-${i % 3}`, `c${i}`);
    assert.equal(result.kind, "started");
    runIds.push(result.run.id);
    // A third of them ended with the terminal event unpublished: claimable too.
    if (i % 3 === 0) {
      await a.finishRun(result.run.userId, result.run.id, { status: "cancelled", reply: "" });
    }
  }
  await using sql = admin(db.url);
  await sql`UPDATE runs SET lease_until = now()`; // as if their owner had died a lease ago
  const claimAll = async (store: PostgresStore, claimer: string) => {
    const claimed: string[] = [];
    for (;;) {
      const batch = await store.claimOrphanedRuns(claimer, LEASE_MS, 4);
      if (batch.length === 0) return claimed;
      for (const run of batch) {
        assert.equal(run.ownerInstance, claimer);
        claimed.push(run.id);
      }
    }
  };
  const [byB, byC] = await Promise.all([claimAll(a, "instance-b"), claimAll(b, "instance-c")]);
  const all = [...byB, ...byC];
  assert.equal(all.length, 30);
  assert.deepEqual(new Set(all), new Set(runIds));
  // Claims only move ownership: the running ones are still running, for their claimer to end.
  const statuses = await sql`SELECT status, count(*)::int AS n FROM runs GROUP BY status
    ORDER BY status`;
  assert.deepEqual(statuses.map((r) => [r.status, r.n]), [["cancelled", 10], ["running", 20]]);
  const owners = await sql`SELECT id, owner_instance FROM runs`;
  const claimerOf = new Map<string, string>([
    ...byB.map((id) => [id, "instance-b"] as const),
    ...byC.map((id) => [id, "instance-c"] as const),
  ]);
  for (const row of owners) assert.equal(row.owner_instance, claimerOf.get(row.id));
});

/**
 * Many chats of one user on new threads, from two stores (two instances) at once, each with
 * `maxActiveRuns`.
 */
async function chatsAtOnce(
  stores: readonly PostgresStore[],
  count: number,
  maxActiveRuns: number,
): Promise<string[]> {
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      stores[i % stores.length].beginChat({
        userId: "alice",
        chatId: `c${i}`,
        text: `text of c${i}`,
        ownerInstance: `instance-${i % stores.length}`,
        leaseMs: LEASE_MS,
        maxActiveRuns,
      })),
  );
  return results.map((r) => r.kind);
}

Deno.test("PostgresStore.beginChat() starts exactly maxActiveRuns of many chats from two stores at once", async () => {
  await using db = await createTestDatabase();
  await using a = new PostgresStore({ url: db.url, max: 10 });
  await using b = new PostgresStore({ url: db.url, max: 10 });
  await Promise.all([a.ping(), b.ping()]);
  await using sql = admin(db.url);
  // Rounds, so that one lucky interleaving cannot hide a race.
  for (let round = 0; round < 3; round++) {
    const kinds = await chatsAtOnce([a, b], 24, 3);
    assert.deepEqual(
      [
        kinds.filter((k) => k === "started").length,
        kinds.filter((k) => k === "too_many_runs").length,
      ],
      [3, 21],
      `round ${round}: ${kinds.join(" ")}`,
    );
    const [{ running, threads, keys }] = await sql`
      SELECT (SELECT count(*)::int FROM runs WHERE status = 'running') AS running,
             (SELECT count(*)::int FROM threads) AS threads,
             (SELECT count(*)::int FROM chat_keys) AS keys`;
    assert.deepEqual([running, threads, keys], [3, 3, 3], "a refused chat stored something");
    await sql`TRUNCATE threads, runs, messages, chat_keys`;
  }
});

// Time: the database's clock decides, never an instance's

Deno.test("PostgresStore keeps a live lease live whatever the instances' clocks say", async () => {
  await using db = await createTestDatabase();
  // A's clock runs an hour behind and B's an hour ahead. Were leases written and compared on
  // instance clocks, B would see each of A's fresh leases as long expired and end A's run.
  await using a = new PostgresStore({ url: db.url, clock: new ManualClock(Date.now() - HOUR_MS) });
  await using b = new PostgresStore({ url: db.url, clock: new ManualClock(Date.now() + HOUR_MS) });
  const started = await chat(a, "alice", "c1");
  assert.equal(started.kind, "started");
  assert.deepEqual(await b.claimOrphanedRuns("instance-b", LEASE_MS, 10), []);
  await a.renewLeases("instance-a", [started.run.id], LEASE_MS);
  assert.deepEqual(await b.claimOrphanedRuns("instance-b", LEASE_MS, 10), []);
  assert.equal((await a.getRun("alice", started.run.id))?.status, "running");

  // The lease ends LEASE_MS after the renewal, on the database's clock.
  await using sql = admin(db.url);
  const [{ leftMs }] = await sql<{ leftMs: number }[]>`
    SELECT (extract(epoch FROM lease_until - now()) * 1000)::float8 AS "leftMs" FROM runs`;
  assert.ok(leftMs > LEASE_MS - 5_000 && leftMs <= LEASE_MS, `lease ends in ${leftMs} ms`);

  // Ended on the database's clock, it is claimed, however far behind B's clock is.
  await using c = new PostgresStore({
    url: db.url,
    clock: new ManualClock(Date.now() - 24 * HOUR_MS),
  });
  await sql`UPDATE runs SET lease_until = now()`;
  const claimed = await c.claimOrphanedRuns("instance-c", LEASE_MS, 10);
  assert.deepEqual(claimed.map((r) => [r.id, r.status, r.ownerInstance]), [
    [started.run.id, "running", "instance-c"],
  ]);
});

Deno.test("PostgresStore keeps a chat id for its TTL whatever the instances' clocks say", async () => {
  await using db = await createTestDatabase();
  // A's clock runs a day behind: were expiry written on it, the key would be born expired
  // for B, and a repeated chat would start a second run.
  const day = 24 * HOUR_MS;
  await using a = new PostgresStore({
    url: db.url,
    clock: new ManualClock(Date.now() - day),
    chatIdTtlSeconds: 60,
  });
  await using b = new PostgresStore({
    url: db.url,
    clock: new ManualClock(Date.now() + day),
    chatIdTtlSeconds: 60,
  });
  const first = await chat(a, "alice", "c1");
  assert.equal(first.kind, "started");
  await a.finishRun("alice", first.run.id, { status: "completed", reply: "r" });
  assert.deepEqual(await chat(b, "alice", "c1"), {
    kind: "duplicate",
    threadId: first.run.threadId,
    runId: first.run.id,
    status: "completed",
  });
  await using sql = admin(db.url);
  const [{ leftMs }] = await sql<{ leftMs: number }[]>`
    SELECT (extract(epoch FROM expires_at - now()) * 1000)::float8 AS "leftMs" FROM chat_keys`;
  assert.ok(leftMs > 55_000 && leftMs <= 60_000, `key expires in ${leftMs} ms`);
});

Deno.test("PostgresStore.claimOrphanedRuns() deletes expired chat ids at most once per sweepIntervalMs", async () => {
  const clock = new ManualClock();
  await using fixture = await storeOnTestDatabase({ clock, sweepIntervalMs: 60_000 });
  const { store } = fixture;
  for (const id of ["c1", "c2", "c3"]) {
    assert.equal((await chat(store, "alice", id)).kind, "started");
  }
  await using sql = admin(fixture.url);
  const keys = async () =>
    (await sql`SELECT chat_id FROM chat_keys ORDER BY chat_id`).map((r) => r.chat_id);
  await sql`UPDATE chat_keys SET expires_at = now() WHERE chat_id = 'c1'`;

  assert.deepEqual(await store.claimOrphanedRuns("instance-b", LEASE_MS, 10), []);
  assert.deepEqual(await keys(), ["c2", "c3"]);
  // Within the interval: no sweep, even with another key expired.
  await sql`UPDATE chat_keys SET expires_at = now() WHERE chat_id = 'c2'`;
  clock.advance(59_999);
  await store.claimOrphanedRuns("instance-b", LEASE_MS, 10);
  assert.deepEqual(await keys(), ["c2", "c3"]);
  clock.advance(1);
  await store.claimOrphanedRuns("instance-b", LEASE_MS, 10);
  assert.deepEqual(await keys(), ["c3"]);
  // Only keys go: the runs stay, and a swept id starts a new chat.
  assert.equal((await sql`SELECT count(*)::int AS n FROM runs`)[0].n, 3);
  assert.equal((await chat(store, "alice", "c1")).kind, "started");
  assert.equal((await chat(store, "alice", "c3")).kind, "duplicate");
});

Deno.test("PostgresStore.claimOrphanedRuns() sweeps expired chat ids in batches", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const first = await chat(store, "alice", "c0");
  assert.equal(first.kind, "started");
  await using sql = admin(fixture.url);
  await sql`
    INSERT INTO chat_keys (user_id, chat_id, run_id, thread_id, text, expires_at)
    SELECT 'alice', 'old-' || g, ${first.run.id}, ${first.run.threadId}, 'x',
           now() - interval '1 hour'
    FROM generate_series(1, 2500) AS g`;
  await store.claimOrphanedRuns("instance-b", LEASE_MS, 10);
  assert.deepEqual(
    (await sql`SELECT chat_id FROM chat_keys`).map((r) => r.chat_id),
    ["c0"],
  );
});

// Scoping and paging

Deno.test("PostgresStore scopes every read to the user", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const a = await chat(store, "alice", "c1");
  assert.equal(a.kind, "started");
  await store.finishRun("alice", a.run.id, { status: "completed", reply: "secret" });
  assert.deepEqual(await store.listThreads("bob", { limit: 50 }), { items: [] });
  assert.equal(await store.listMessages("bob", a.run.threadId, { limit: 50 }), null);
  assert.equal(await store.getRun("bob", a.run.id), null);
  assert.deepEqual(await chat(store, "bob", "c2", a.run.threadId), { kind: "not_found" });
  assert.equal(await store.finishRun("bob", a.run.id, { status: "cancelled", reply: "" }), false);
  await store.abandonChat("bob", a.run.id);
  assert.equal(
    await store.threadHistory("bob", a.run.threadId, { beforeRunId: a.run.id, limit: 10 }),
    null,
  );
  assert.equal(await store.renameThread("bob", a.run.threadId, "stolen"), null);
  assert.equal(await store.deleteThread("bob", a.run.threadId), false);
  assert.equal((await store.getRun("alice", a.run.id))?.reply, "secret");
  assert.equal((await store.listThreads("alice", { limit: 1 })).items[0].title, "text of c1");
});

Deno.test("PostgresStore.deleteThread() leaves no row of the thread in any table", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const first = await chat(store, "alice", "c1");
  assert.equal(first.kind, "started");
  const threadId = first.run.threadId;
  await store.finishRun("alice", first.run.id, { status: "completed", reply: "r" });
  assert.equal((await chat(store, "alice", "c2", threadId)).kind, "started");
  const kept = await chat(store, "alice", "c3");
  assert.equal(kept.kind, "started");
  assert.equal(await store.deleteThread("alice", threadId), true);
  await using sql = admin(fixture.url);
  const [left] = await sql`
    SELECT (SELECT count(*)::int FROM threads WHERE id = ${threadId}) AS threads,
           (SELECT count(*)::int FROM runs WHERE thread_id = ${threadId}) AS runs,
           (SELECT count(*)::int FROM messages WHERE thread_id = ${threadId}) AS messages,
           (SELECT count(*)::int FROM chat_keys WHERE thread_id = ${threadId}) AS keys,
           (SELECT count(*)::int FROM chat_keys) AS all_keys`;
  assert.deepEqual({ ...left }, { threads: 0, runs: 0, messages: 0, keys: 0, all_keys: 1 });
});

Deno.test("PostgresStore.listMessages() pages through many messages without gap or repeat", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  let threadId: string | undefined;
  const expected: string[] = [];
  for (let i = 0; i < 60; i++) {
    const result = await chat(store, "alice", `c${i}`, threadId);
    assert.equal(result.kind, "started");
    threadId = result.run.threadId;
    await store.finishRun("alice", result.run.id, { status: "completed", reply: `reply ${i}` });
    expected.push(`text of c${i}`, `reply ${i}`);
  }
  const seen: string[] = [];
  let before: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await store.listMessages("alice", threadId!, { limit: 7, before });
    assert.ok(page !== null);
    seen.unshift(...page.items.map((m) => m.text));
    pages++;
    if (page.nextCursor === undefined) break;
    before = page.nextCursor;
  }
  assert.equal(pages, Math.ceil(120 / 7));
  assert.deepEqual(seen, expected);
});

Deno.test("PostgresStore.beginChat() stores text PostgreSQL cannot hold and still dedupes", async () => {
  await using fixture = await storeOnTestDatabase();
  const { store } = fixture;
  const text = "nul\0 and lone \ud800 surrogate";
  const input = { userId: "alice", chatId: "c1", text, ownerInstance: "i", leaseMs: LEASE_MS };
  const first = await store.beginChat(input);
  assert.equal(first.kind, "started");
  assert.equal(first.run.text, "nul\uFFFD and lone \uFFFD surrogate");
  assert.equal((await store.beginChat(input)).kind, "duplicate");
  // Ids that no row can hold are simply not found.
  assert.deepEqual(await store.beginChat({ ...input, chatId: "c2", threadId: "t\0" }), {
    kind: "not_found",
  });
  assert.equal(await store.getRun("alice", "r\0"), null);
  assert.equal(await store.listMessages("alice", "t\ud800", { limit: 5 }), null);
  assert.deepEqual(await store.listThreads("al\0ice", { limit: 5 }), { items: [] });
  assert.equal(await store.finishRun("alice", "r\0", { status: "cancelled", reply: "" }), false);
  await store.renewLeases("i", ["r\0", first.run.id], LEASE_MS);
  await assert.rejects(() => store.beginChat({ ...input, chatId: "c\0" }), RangeError);
});

/**
 * A TCP proxy to PostgreSQL that a test can take down and bring back, on a fixed port.
 */
class TcpProxy implements AsyncDisposable {
  readonly port = freePort();
  #target: { hostname: string; port: number };
  #listener: Deno.Listener | null = null;
  #accepting: Promise<void> | null = null;
  #conns = new Set<Deno.Conn>();
  #pipes = new Set<Promise<void>>();

  constructor(target: URL) {
    this.#target = { hostname: target.hostname, port: Number(target.port || 5432) };
  }

  start(): void {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.#listener = listener;
    this.#accepting = (async () => {
      for await (const client of listener) this.#forward(client);
    })().catch(() => {});
  }

  #forward(client: Deno.Conn): void {
    this.#conns.add(client);
    const pipe = (async () => {
      let server: Deno.Conn | undefined;
      try {
        server = await Deno.connect(this.#target);
        this.#conns.add(server);
        await Promise.all([
          client.readable.pipeTo(server.writable),
          server.readable.pipeTo(client.writable),
        ]);
      } catch {
        // A side closed: close both below.
      } finally {
        for (const conn of [client, server]) {
          if (conn === undefined) continue;
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Already closed by its pipe.
          }
        }
      }
    })();
    this.#pipes.add(pipe);
    pipe.finally(() => this.#pipes.delete(pipe));
  }

  /** Refuses new connections and cuts the open ones. */
  async stop(): Promise<void> {
    this.#listener?.close();
    this.#listener = null;
    await this.#accepting;
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await Promise.all(this.#pipes);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
