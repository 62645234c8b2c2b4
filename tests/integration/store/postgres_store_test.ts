import assert from "node:assert/strict";
import postgres from "postgres";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import { loadMigrations, migrate, MigrationError } from "../../../src/store/migrate.ts";
import { PostgresStore, type PostgresStoreOptions } from "../../../src/store/postgres_store.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { createTestDatabase, freePort } from "../../_helpers/services.ts";
import { registerChatStoreConformance } from "../../_helpers/store_conformance.ts";

registerChatStoreConformance("PostgresStore", async ({ clock, chatIdTtlSeconds }) => {
  const db = await createTestDatabase();
  const store = new PostgresStore({ url: db.url, clock, chatIdTtlSeconds });
  return {
    store,
    async [Symbol.asyncDispose]() {
      await store.close();
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
  assert.deepEqual(await migrate(sql), ["0001_init.sql"]);
  assert.deepEqual(await migrate(sql), []);
  const rows = await sql`SELECT name FROM schema_migrations`;
  assert.deepEqual(rows.map((r) => r.name), ["0001_init.sql"]);
});

Deno.test("migrate() applies each file exactly once when run from many pools at once", async () => {
  await using db = await createTestDatabase();
  const pools = Array.from({ length: 6 }, () => postgres(db.url, { max: 3, onnotice: () => {} }));
  try {
    const results = await Promise.all(pools.map((sql) => migrate(sql)));
    assert.deepEqual(results.flat(), ["0001_init.sql"]);
  } finally {
    await Promise.all(pools.map((sql) => sql.end()));
  }
  await using sql = admin(db.url);
  assert.deepEqual((await sql`SELECT count(*)::int AS n FROM schema_migrations`)[0].n, 1);
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
  const rows = await sql`SELECT name FROM schema_migrations`;
  assert.deepEqual(rows.map((r) => r.name), ["0001_init.sql"]);
});

Deno.test("PostgresStore.ping() rejects with a MigrationError naming the failed file, for good", async () => {
  await using db = await createTestDatabase();
  const migrations = [
    ...await loadMigrations(),
    { name: "0002_broken.sql", sql: "CREATE TABLE broken (id int);\nCREATE TABLE oops (;" },
  ];
  await using store = new PostgresStore({ url: db.url, migrations });
  const error = await store.ping().then(() => null, (e: unknown) => e);
  assert.ok(error instanceof MigrationError, `expected a MigrationError, got ${error}`);
  assert.equal(error.file, "0002_broken.sql");
  assert.match(
    error.message,
    /^Migration "0002_broken\.sql" failed: syntax error .*SQLSTATE 42601/,
  );
  // Fatal: not retried, every call reports it.
  assert.equal(await store.ping().catch((e) => e), error);
  await assert.rejects(() => chat(store, "alice", "c1"), MigrationError);
  // The failed file left nothing behind; the one before it stays applied.
  await using sql = admin(db.url);
  assert.deepEqual((await sql`SELECT name FROM schema_migrations`).map((r) => r.name), [
    "0001_init.sql",
  ]);
  assert.equal((await sql`SELECT to_regclass('broken') AS t`)[0].t, null);
});

Deno.test("PostgresStore.connect() resolves with a migrated store", async () => {
  await using db = await createTestDatabase();
  await using store = await PostgresStore.connect({ url: db.url });
  assert.equal((await chat(store, "alice", "c1")).kind, "started");
});

// Availability (SPEC §7)

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
  await store.finishRun("alice", first.run.id, { status: "cancelled" });
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
  const clock = new ManualClock();
  await using a = new PostgresStore({ url: db.url, clock, chatIdTtlSeconds: 60 });
  await using b = new PostgresStore({ url: db.url, clock, chatIdTtlSeconds: 60 });
  const first = await chat(a, "alice", "c1");
  assert.equal(first.kind, "started");
  await a.finishRun("alice", first.run.id, { status: "completed", reply: "r" });
  clock.advance(60_000);
  const results = await Promise.all([
    ...Array.from({ length: 5 }, () => chat(a, "alice", "c1")),
    ...Array.from({ length: 5 }, () => chat(b, "alice", "c1")),
  ]);
  assert.equal(results.filter((r) => r.kind === "started").length, 1);
  assert.equal(results.filter((r) => r.kind === "duplicate").length, 9);
});

Deno.test("PostgresStore.claimOrphanedRuns() hands each run to one of two stores at once", async () => {
  await using db = await createTestDatabase();
  const clock = new ManualClock();
  await using a = new PostgresStore({ url: db.url, clock });
  await using b = new PostgresStore({ url: db.url, clock });
  const runIds: string[] = [];
  for (let i = 0; i < 30; i++) {
    const result = await chat(a, `user-${i % 3}`, `c${i}`);
    assert.equal(result.kind, "started");
    runIds.push(result.run.id);
    // A third of them ended with the terminal event unpublished: claimable too.
    if (i % 3 === 0) await a.finishRun(result.run.userId, result.run.id, { status: "cancelled" });
  }
  clock.advance(LEASE_MS);
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
  await using sql = admin(db.url);
  const statuses = await sql`SELECT status, count(*)::int AS n FROM runs GROUP BY status
    ORDER BY status`;
  assert.deepEqual(statuses.map((r) => [r.status, r.n]), [["cancelled", 10], ["failed", 20]]);
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
  assert.equal(await store.finishRun("bob", a.run.id, { status: "cancelled" }), false);
  await store.abandonChat("bob", a.run.id);
  assert.equal((await store.getRun("alice", a.run.id))?.reply, "secret");
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
  assert.equal(await store.finishRun("alice", "r\0", { status: "cancelled" }), false);
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
