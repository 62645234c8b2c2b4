/**
 * The {@link ChatStore} contract as one suite, registered once per implementation so the
 * memory and PostgreSQL stores cannot drift apart.
 *
 * @module
 */
import assert from "node:assert/strict";
import { delay, systemClock } from "../../src/_util/clock.ts";
import {
  type BeginChatResult,
  type ChatStore,
  INTERRUPTED_ERROR,
  type RunRecord,
} from "../../src/store/mod.ts";
import type { ManualClock } from "./manual_clock.ts";

/**
 * The clock a store under test stamps records with and decides leases and chat id expiry by:
 * the injected one for the memory store, the database's for PostgreSQL.
 */
export interface StoreTime {
  /** That clock's reading, in epoch milliseconds. */
  now(): Promise<number>;
  /**
   * Lets at least `ms` of that clock pass: a manual clock advances at once, a real one is
   * waited for. The suite calls it only between two polls of a condition.
   */
  pass(ms: number): Promise<void>;
}

/** A store under test, with whatever it needs released on dispose. */
export interface ConformanceFixture extends AsyncDisposable {
  readonly store: ChatStore;
  /** The clock `store` stamps and decides by. */
  readonly time: StoreTime;
}

/** What the suite asks of a factory. */
export interface ConformanceFactoryOptions {
  /** Passed to the store: most tests take 600 s, the expiry test a second. */
  readonly chatIdTtlSeconds: number;
}

/** Builds a fresh, empty store for one test. */
export type ConformanceFactory = (
  options: ConformanceFactoryOptions,
) => Promise<ConformanceFixture>;

/** Options of {@link registerChatStoreConformance}. */
export interface ConformanceOptions {
  /** Passed to each `Deno.test` (e.g. `{ net: true }`); inherited when absent. */
  readonly permissions?: Deno.PermissionOptions;
  /** Skips the whole suite (e.g. when the service is not configured). */
  readonly ignore?: boolean;
}

/** The {@link StoreTime} of a store that runs on `clock`. */
export function manualStoreTime(clock: ManualClock): StoreTime {
  return {
    now: () => Promise.resolve(clock.now()),
    pass(ms) {
      clock.advance(ms);
      return Promise.resolve();
    },
  };
}

/** The {@link StoreTime} of a store on a real clock read by `now` (e.g. the database's). */
export function realStoreTime(now: () => Promise<number>): StoreTime {
  return { now, pass: (ms) => delay(systemClock, ms) };
}

const TTL_SECONDS = 600;
/** The chat id TTL of the expiry test: a real clock has to wait it out. */
const SHORT_TTL_SECONDS = 1;
/** A lease no test outlives: its run is never claimed while the test runs. */
const LONG_LEASE_MS = 30_000;
/** A lease the lease tests wait out, polling. */
const SHORT_LEASE_MS = 300;
/** The renewal of the renewal test: long enough to claim in between, short enough to wait. */
const RENEWED_LEASE_MS = 1_000;
/** Between two polls of a condition, in the store's time. */
const POLL_MS = 20;
/** How long a condition may take to hold, in the store's time. */
const WAIT_MS = 10_000;
const OWNER = "instance-a";

type TestContext = { store: ChatStore; time: StoreTime };

/**
 * Registers the conformance tests, named `"<label>.<method>() <behaviour>"`.
 *
 * Time-dependent cases hold for a manual clock and a real one alike: they take a short real
 * lease or TTL and poll, with a deadline, until it has ended (never a fixed sleep), and check
 * each stored time against the store's clock read just before and just after the call that
 * stamped it (with a manual clock, both readings are the same instant).
 *
 * @param label The class name of the implementation, e.g. `MemoryStore`.
 * @param factory Creates an empty store and tells the suite which clock it runs on.
 */
export function registerChatStoreConformance(
  label: string,
  factory: ConformanceFactory,
  options: ConformanceOptions = {},
): void {
  function test(
    name: string,
    ...args:
      | [fn: (t: TestContext) => Promise<void>]
      | [setup: Partial<ConformanceFactoryOptions>, fn: (t: TestContext) => Promise<void>]
  ): void {
    const [setup, fn] = args.length === 1 ? [{}, args[0]] : args;
    Deno.test({
      name: `${label}.${name}`,
      ignore: options.ignore,
      permissions: options.permissions,
      async fn() {
        await using fixture = await factory({ chatIdTtlSeconds: TTL_SECONDS, ...setup });
        await fn({ store: fixture.store, time: fixture.time });
      },
    });
  }

  // beginChat

  test("beginChat() starts a run on a new thread titled with the trimmed text", async ({ store, time }) => {
    const [result, span] = await during(
      time,
      () => chat(store, "alice", "c1", { text: "  Hello there \n" }),
    );
    assert.equal(result.kind, "started");
    const run = result.run;
    // One instant on the store's clock for the run, its thread and its message.
    const now = run.createdAt;
    assertWithin(now, span, "createdAt");
    assert.equal(run.userId, "alice");
    assert.equal(run.chatId, "c1");
    assert.equal(run.text, "  Hello there \n");
    assert.equal(run.status, "running");
    assert.equal(run.ownerInstance, OWNER);
    assert.equal(run.startSeq, null);
    assert.equal(run.endSeq, null);
    assert.equal(run.reply, null);
    assert.equal(run.error, null);
    assert.equal(run.usage, null);
    assert.equal(run.finishReason, null);
    assert.equal(run.createdAt, now);
    assert.equal(run.finishedAt, null);
    assert.ok(run.id.length > 0 && run.threadId.length > 0);

    const threads = await store.listThreads("alice", { limit: 10 });
    assert.deepEqual(threads, {
      items: [{ id: run.threadId, title: "Hello there", createdAt: now, updatedAt: now }],
    });
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.equal(messages?.items.length, 1);
    const [message] = messages!.items;
    assert.deepEqual({ ...message, id: "" }, {
      id: "",
      role: "user",
      text: "  Hello there \n",
      runId: run.id,
      seq: null,
      createdAt: now,
      runStatus: "running",
    });
    assert.equal(messages?.nextCursor, undefined);
    assert.deepEqual(await store.getRun("alice", run.id), run);
  });

  test("beginChat() cuts a new thread's title to 80 characters", async ({ store }) => {
    const text = `  ${"é".repeat(79)}😀${"x".repeat(50)}`;
    const { run } = await chat(store, "alice", "c1", { text });
    const [thread] = (await store.listThreads("alice", { limit: 1 })).items;
    assert.equal(thread.id, run.threadId);
    assert.equal(thread.title, `${"é".repeat(79)}😀`);
  });

  test("beginChat() starts a run on the user's existing thread and touches it", async ({ store, time }) => {
    const first = await chat(store, "alice", "c1");
    assert.equal(
      await store.finishRun("alice", first.run.id, { status: "cancelled", reply: "" }),
      true,
    );
    const { finishedAt } = (await store.getRun("alice", first.run.id))!;
    await waitPast(time, finishedAt!); // so that the touch shows
    const [second, span] = await during(time, () =>
      chat(store, "alice", "c2", {
        threadId: first.run.threadId,
        text: "again",
      }));
    assert.equal(second.kind, "started");
    assert.equal(second.run.threadId, first.run.threadId);
    assert.notEqual(second.run.id, first.run.id);
    assertWithin(second.run.createdAt, span, "createdAt");
    const { items } = await store.listThreads("alice", { limit: 10 });
    assert.equal(items.length, 1);
    assert.equal(items[0].createdAt, first.run.createdAt);
    assert.equal(items[0].updatedAt, second.run.createdAt);
    assert.ok(items[0].updatedAt > finishedAt!);
    const messages = await store.listMessages("alice", first.run.threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => [m.role, m.text, m.runId]), [
      ["user", "hello", first.run.id],
      ["assistant", "", first.run.id],
      ["user", "again", second.run.id],
    ]);
  });

  test("beginChat() returns duplicate with the run's current status for a repeated id", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    const { threadId, id: runId } = first.run;
    assert.deepEqual(await chat(store, "alice", "c1"), {
      kind: "duplicate",
      threadId,
      runId,
      status: "running",
    });
    // Naming the original thread counts as the same chat.
    assert.deepEqual(await chat(store, "alice", "c1", { threadId }), {
      kind: "duplicate",
      threadId,
      runId,
      status: "running",
    });
    await store.finishRun("alice", runId, { status: "completed", reply: "hi" });
    assert.deepEqual(await chat(store, "alice", "c1"), {
      kind: "duplicate",
      threadId,
      runId,
      status: "completed",
    });
    // Nothing else was stored.
    assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 1);
    assert.equal((await store.listMessages("alice", threadId, { limit: 10 }))?.items.length, 2);
  });

  test("beginChat() treats a repeat without threadId as the same chat", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    await store.finishRun("alice", first.run.id, { status: "cancelled", reply: "" });
    const second = await chat(store, "alice", "c2", { threadId: first.run.threadId });
    const repeat = await chat(store, "alice", "c2");
    assert.deepEqual(repeat, {
      kind: "duplicate",
      threadId: first.run.threadId,
      runId: second.run.id,
      status: "running",
    });
  });

  test("beginChat() returns idempotency_conflict for other text or another thread", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    await store.finishRun("alice", first.run.id, { status: "cancelled", reply: "" });
    const other = await chat(store, "alice", "c2");
    assert.deepEqual(await chat(store, "alice", "c1", { text: "other text" }), {
      kind: "idempotency_conflict",
    });
    assert.deepEqual(await chat(store, "alice", "c1", { threadId: other.run.threadId }), {
      kind: "idempotency_conflict",
    });
    assert.deepEqual(await chat(store, "alice", "c1", { threadId: "no-such-thread" }), {
      kind: "idempotency_conflict",
    });
    assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 2);
  });

  test("beginChat() frees a chat id once chatIdTtlSeconds have passed", {
    chatIdTtlSeconds: SHORT_TTL_SECONDS,
  }, async ({ store, time }) => {
    const first = await chat(store, "alice", "c1");
    await store.finishRun("alice", first.run.id, { status: "completed", reply: "done" });
    assert.equal((await chat(store, "alice", "c1")).kind, "duplicate");
    // Until the key expires, other text on that id is a conflict; then it starts afresh.
    const again = await eventually(
      time,
      "the chat id to expire",
      () => chatResult(store, "alice", "c1", { text: "different text now" }),
      (result) => {
        if (result.kind !== "started") assert.equal(result.kind, "idempotency_conflict");
        return result.kind === "started";
      },
    ) as Started;
    assert.ok(
      Date.parse(again.run.createdAt) >=
        Date.parse(first.run.createdAt) + SHORT_TTL_SECONDS * 1000,
      `freed at ${again.run.createdAt}, before the TTL of a key used at ${first.run.createdAt}`,
    );
    assert.notEqual(again.run.id, first.run.id);
    assert.notEqual(again.run.threadId, first.run.threadId);
    assert.deepEqual(await chat(store, "alice", "c1", { text: "different text now" }), {
      kind: "duplicate",
      threadId: again.run.threadId,
      runId: again.run.id,
      status: "running",
    });
    assert.equal((await store.getRun("alice", first.run.id))?.status, "completed");
  });

  test("beginChat() keys chat ids per user", async ({ store }) => {
    const a = await chat(store, "alice", "c1");
    const b = await chat(store, "bob", "c1");
    assert.equal(a.kind, "started");
    assert.equal(b.kind, "started");
    assert.notEqual(a.run.threadId, b.run.threadId);
  });

  test("beginChat() returns not_found for a missing thread or another user's", async ({ store }) => {
    const bobs = await chat(store, "bob", "c1");
    await store.finishRun("bob", bobs.run.id, { status: "cancelled", reply: "" });
    assert.deepEqual(await chat(store, "alice", "c1", { threadId: "missing" }), {
      kind: "not_found",
    });
    assert.deepEqual(await chat(store, "alice", "c2", { threadId: bobs.run.threadId }), {
      kind: "not_found",
    });
    // Nothing was stored: the ids are still free.
    assert.equal((await chat(store, "alice", "c1")).kind, "started");
    assert.equal(
      (await store.listMessages("bob", bobs.run.threadId, { limit: 10 }))?.items
        .length,
      2,
    );
  });

  test("beginChat() returns thread_busy while the thread has a running run", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    const threadId = first.run.threadId;
    assert.deepEqual(await chat(store, "alice", "c2", { threadId }), { kind: "thread_busy" });
    // The refused id was not kept.
    await store.finishRun("alice", first.run.id, { status: "failed", error: failure(), reply: "" });
    const second = await chat(store, "alice", "c2", { threadId });
    assert.equal(second.kind, "started");
  });

  test("beginChat() starts exactly one run for concurrent chats with one id", async ({ store }) => {
    const results = await Promise.all([
      chatResult(store, "alice", "c1"),
      chatResult(store, "alice", "c1"),
      chatResult(store, "alice", "c1", { text: "other" }),
    ]);
    const started = results.filter((r) => r.kind === "started");
    assert.equal(started.length, 1);
    const rest = results.filter((r) => r.kind !== "started").map((r) => r.kind).sort();
    const startedText = started[0].kind === "started" ? started[0].run.text : "";
    assert.deepEqual(
      rest,
      startedText === "hello"
        ? ["duplicate", "idempotency_conflict"]
        : ["idempotency_conflict", "idempotency_conflict"],
    );
    assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 1);
  });

  test("beginChat() starts exactly one run for concurrent chats on one thread", async ({ store }) => {
    const first = await chat(store, "alice", "c0");
    await store.finishRun("alice", first.run.id, { status: "cancelled", reply: "" });
    const threadId = first.run.threadId;
    const results = await Promise.all(
      ["c1", "c2", "c3"].map((id) => chatResult(store, "alice", id, { threadId })),
    );
    assert.deepEqual(results.map((r) => r.kind).sort(), [
      "started",
      "thread_busy",
      "thread_busy",
    ]);
  });

  // beginChat: maxActiveRuns

  test("beginChat() refuses too_many_runs at maxActiveRuns runs in flight and stores nothing", async ({ store, time }) => {
    const limit = { maxActiveRuns: 2 };
    const a = await chat(store, "alice", "c1", limit);
    const idle = await chat(store, "alice", "c2", limit);
    await store.finishRun("alice", idle.run.id, { status: "completed", reply: "r" });
    const b = await chat(store, "alice", "c3", limit);
    assert.equal(a.kind, "started");
    assert.equal(b.kind, "started");
    const before = await store.listThreads("alice", { limit: 10 });
    await waitPast(time, before.items[0].updatedAt); // so that a touch would show
    // On a new thread and on an idle one alike.
    assert.deepEqual(await chatResult(store, "alice", "c4", limit), { kind: "too_many_runs" });
    assert.deepEqual(
      await chatResult(store, "alice", "c5", { ...limit, threadId: idle.run.threadId }),
      { kind: "too_many_runs" },
    );
    assert.deepEqual(await store.listThreads("alice", { limit: 10 }), before);
    assert.equal(
      (await store.listMessages("alice", idle.run.threadId, { limit: 10 }))?.items.length,
      2,
    );
    // Other users have their own count; a higher limit lets it through.
    assert.equal((await chat(store, "bob", "c4", limit)).kind, "started");
    assert.equal((await chatResult(store, "alice", "c6", { maxActiveRuns: 3 })).kind, "started");
    // Once a run ends there is room again, and the refused ids were never kept.
    await store.finishRun("alice", a.run.id, { status: "cancelled", reply: "" });
    await store.finishRun("alice", b.run.id, { status: "cancelled", reply: "" });
    const retried = await chat(store, "alice", "c5", { ...limit, threadId: idle.run.threadId });
    assert.equal(retried.kind, "started");
    assert.equal(retried.run.threadId, idle.run.threadId);
  });

  test("beginChat() checks duplicate, idempotency_conflict, not_found and thread_busy before too_many_runs", async ({ store }) => {
    const limit = { maxActiveRuns: 1 };
    const { run } = await chat(store, "alice", "c1", limit);
    const other = await chat(store, "bob", "c1");
    assert.deepEqual(await chatResult(store, "alice", "c1", limit), {
      kind: "duplicate",
      threadId: run.threadId,
      runId: run.id,
      status: "running",
    });
    assert.deepEqual(await chatResult(store, "alice", "c1", { ...limit, text: "other" }), {
      kind: "idempotency_conflict",
    });
    assert.deepEqual(await chatResult(store, "alice", "c2", { ...limit, threadId: "missing" }), {
      kind: "not_found",
    });
    assert.deepEqual(
      await chatResult(store, "alice", "c2", { ...limit, threadId: other.run.threadId }),
      { kind: "not_found" },
    );
    assert.deepEqual(await chatResult(store, "alice", "c2", { ...limit, threadId: run.threadId }), {
      kind: "thread_busy",
    });
    assert.deepEqual(await chatResult(store, "alice", "c2", limit), { kind: "too_many_runs" });
  });

  test("beginChat() does not count a run whose lease lapsed towards maxActiveRuns", async ({ store, time }) => {
    const stale = await chat(store, "alice", "c1", { leaseMs: SHORT_LEASE_MS });
    const fresh = await eventually(
      time,
      "the stale run's lease to lapse",
      () => chatResult(store, "alice", "c2", { maxActiveRuns: 1 }),
      (result) => {
        if (result.kind !== "started") assert.equal(result.kind, "too_many_runs");
        return result.kind === "started";
      },
    ) as Started;
    assert.ok(
      Date.parse(fresh.run.createdAt) >= Date.parse(stale.run.createdAt) + SHORT_LEASE_MS,
      "a run counted as lapsed before its lease ended",
    );
    assert.equal((await store.getRun("alice", stale.run.id))?.status, "running");
    // The new run's lease has not lapsed: it counts.
    assert.deepEqual(await chatResult(store, "alice", "c3", { maxActiveRuns: 1 }), {
      kind: "too_many_runs",
    });
  });

  test("beginChat() sets no limit when maxActiveRuns is 0 or absent", async ({ store }) => {
    for (let i = 0; i < 6; i++) {
      const options = i % 2 === 0 ? { maxActiveRuns: 0 } : {};
      assert.equal((await chatResult(store, "alice", `c${i}`, options)).kind, "started");
    }
  });

  test("beginChat() throws RangeError for a maxActiveRuns that is not a count", async ({ store }) => {
    for (const maxActiveRuns of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(() => chatResult(store, "alice", "c1", { maxActiveRuns }), RangeError);
    }
    assert.deepEqual(await store.listThreads("alice", { limit: 10 }), { items: [] });
  });

  test("beginChat() starts exactly maxActiveRuns of concurrent chats on new threads", async ({ store }) => {
    const results = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => chatResult(store, "alice", `c${i}`, { maxActiveRuns: 3 }),
      ),
    );
    assert.equal(results.filter((r) => r.kind === "started").length, 3);
    assert.equal(results.filter((r) => r.kind === "too_many_runs").length, 5);
    assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 3);
  });

  // abandonChat

  test("abandonChat() removes the run, its message, its key and the thread it created", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    await store.abandonChat("alice", first.run.id);
    assert.equal(await store.getRun("alice", first.run.id), null);
    assert.equal(await store.listMessages("alice", first.run.threadId, { limit: 10 }), null);
    assert.deepEqual(await store.listThreads("alice", { limit: 10 }), { items: [] });
    const retry = await chat(store, "alice", "c1");
    assert.equal(retry.kind, "started");
    assert.notEqual(retry.run.id, first.run.id);
  });

  test("abandonChat() keeps an existing thread and frees it for the next chat", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    const threadId = first.run.threadId;
    await store.finishRun("alice", first.run.id, { status: "completed", reply: "r1" });
    const second = await chat(store, "alice", "c2", { threadId, text: "second" });
    await store.abandonChat("alice", second.run.id);
    assert.equal(await store.getRun("alice", second.run.id), null);
    const messages = await store.listMessages("alice", threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => m.text), ["hello", "r1"]);
    const retry = await chat(store, "alice", "c2", { threadId, text: "second" });
    assert.equal(retry.kind, "started");
  });

  test("abandonChat() ignores another user's run", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    await store.abandonChat("bob", first.run.id);
    assert.equal((await store.getRun("alice", first.run.id))?.status, "running");
    assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 1);
  });

  // recordRunStart, finishRun, recordRunEnd

  test("recordRunStart() sets startSeq on the run and on the user's message", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.recordRunStart("bob", run.id, 99); // not bob's: ignored
    assert.equal((await store.getRun("alice", run.id))?.startSeq, null);
    await store.recordRunStart("alice", run.id, 7);
    assert.equal((await store.getRun("alice", run.id))?.startSeq, 7);
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => m.seq), [7]);
  });

  test("finishRun() completes a running run once and stores the reply", async ({ store, time }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.recordRunStart("alice", run.id, 1);
    await waitPast(time, run.createdAt);
    const usage = { inputTokens: 1_200, outputTokens: 345 };
    const [finished, span] = await during(
      time,
      () =>
        store.finishRun("alice", run.id, {
          status: "completed",
          reply: "the reply",
          usage,
          finishReason: "stop",
        }),
    );
    assert.equal(finished, true);
    assert.equal(
      await store.finishRun("alice", run.id, { status: "failed", error: failure(), reply: "" }),
      false,
    );
    const stored = await store.getRun("alice", run.id);
    assert.equal(stored?.status, "completed");
    assert.equal(stored?.reply, "the reply");
    assert.equal(stored?.error, null);
    assert.deepEqual(stored?.usage, usage);
    assert.equal(stored?.finishReason, "stop");
    const finishedAt = stored!.finishedAt!;
    assertWithin(finishedAt, span, "finishedAt");
    assert.ok(finishedAt > run.createdAt);
    assert.equal(stored?.endSeq, null);
    const [thread] = (await store.listThreads("alice", { limit: 1 })).items;
    assert.equal(thread.updatedAt, finishedAt);
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.deepEqual(
      messages?.items.map((m) => ({ ...m, id: "", createdAt: "" })),
      [
        {
          id: "",
          role: "user",
          text: "hello",
          runId: run.id,
          seq: 1,
          createdAt: "",
          runStatus: "completed",
        },
        {
          id: "",
          role: "assistant",
          text: "the reply",
          runId: run.id,
          seq: null,
          createdAt: "",
          runStatus: "completed",
        },
      ],
    );
    assert.equal(messages?.items[1].createdAt, finishedAt);
  });

  test("finishRun() stores a failed or cancelled run's reply so far as its message", async ({ store }) => {
    const a = await chat(store, "alice", "c1");
    const b = await chat(store, "alice", "c2");
    const c = await chat(store, "alice", "c3");
    const usage = { inputTokens: 10, outputTokens: 4 };
    assert.equal(
      await store.finishRun("alice", a.run.id, {
        status: "failed",
        error: failure(),
        reply: "Half an ans",
        usage,
        finishReason: "tool-calls",
      }),
      true,
    );
    assert.equal(
      await store.finishRun("alice", b.run.id, { status: "cancelled", reply: "Stopped he" }),
      true,
    );
    assert.equal(
      await store.finishRun("alice", c.run.id, { status: "failed", error: failure(), reply: "" }),
      true,
    );
    const failed = await store.getRun("alice", a.run.id);
    assert.equal(failed?.status, "failed");
    assert.deepEqual(failed?.error, failure());
    assert.equal(failed?.reply, "Half an ans");
    assert.deepEqual(failed?.usage, usage);
    assert.equal(failed?.finishReason, "tool-calls");
    const cancelled = await store.getRun("alice", b.run.id);
    assert.equal(cancelled?.status, "cancelled");
    assert.equal(cancelled?.error, null);
    assert.equal(cancelled?.reply, "Stopped he");
    assert.equal(cancelled?.usage, null);
    assert.equal(cancelled?.finishReason, null);
    const shown = async (run: RunRecord) =>
      (await store.listMessages("alice", run.threadId, { limit: 10 }))?.items.map((m) => ({
        role: m.role,
        text: m.text,
        runStatus: m.runStatus,
        error: m.error,
      }));
    // The error rides on the assistant's message only.
    assert.deepEqual(await shown(a.run), [
      { role: "user", text: "hello", runStatus: "failed", error: undefined },
      { role: "assistant", text: "Half an ans", runStatus: "failed", error: failure() },
    ]);
    assert.deepEqual(await shown(b.run), [
      { role: "user", text: "hello", runStatus: "cancelled", error: undefined },
      { role: "assistant", text: "Stopped he", runStatus: "cancelled", error: undefined },
    ]);
    // A run that left no text still has its (empty) assistant message.
    assert.deepEqual(await shown(c.run), [
      { role: "user", text: "hello", runStatus: "failed", error: undefined },
      { role: "assistant", text: "", runStatus: "failed", error: failure() },
    ]);
    const messages = await store.listMessages("alice", a.run.threadId, { limit: 10 });
    assert.equal("error" in messages!.items[0], false);
  });

  test("finishRun() stores bad usage counts as rounded or 0, and still ends the run", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    const usage = { inputTokens: 12.6, outputTokens: Number.NaN };
    assert.equal(
      await store.finishRun("alice", run.id, { status: "completed", reply: "r", usage }),
      true,
    );
    assert.deepEqual((await store.getRun("alice", run.id))?.usage, {
      inputTokens: 13,
      outputTokens: 0,
    });
    const other = await chat(store, "alice", "c2");
    const negative = { inputTokens: -5, outputTokens: Number.POSITIVE_INFINITY };
    assert.equal(
      await store.finishRun("alice", other.run.id, {
        status: "cancelled",
        reply: "",
        usage: negative,
      }),
      true,
    );
    assert.deepEqual((await store.getRun("alice", other.run.id))?.usage, {
      inputTokens: 0,
      outputTokens: 0,
    });
  });

  test("finishRun() returns false for another user's run or a missing one", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    assert.equal(await store.finishRun("bob", run.id, { status: "cancelled", reply: "" }), false);
    assert.equal(
      await store.finishRun("alice", "missing", { status: "cancelled", reply: "" }),
      false,
    );
    assert.equal((await store.getRun("alice", run.id))?.status, "running");
  });

  test("finishRun() lets exactly one of racing callers win", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    const results = await Promise.all([
      store.finishRun("alice", run.id, { status: "completed", reply: "a" }),
      store.finishRun("alice", run.id, { status: "cancelled", reply: "" }),
      store.finishRun("alice", run.id, { status: "completed", reply: "b" }),
    ]);
    assert.equal(results.filter(Boolean).length, 1);
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.ok((messages?.items.filter((m) => m.role === "assistant").length ?? 0) <= 1);
  });

  test("recordRunEnd() sets endSeq on the run and on the assistant's message", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.recordRunStart("alice", run.id, 3);
    await store.finishRun("alice", run.id, { status: "completed", reply: "done" });
    await store.recordRunEnd("bob", run.id, 99); // not bob's: ignored
    assert.equal((await store.getRun("alice", run.id))?.endSeq, null);
    await store.recordRunEnd("alice", run.id, 8);
    const stored = await store.getRun("alice", run.id);
    assert.equal(stored?.startSeq, 3);
    assert.equal(stored?.endSeq, 8);
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => [m.role, m.seq]), [["user", 3], [
      "assistant",
      8,
    ]]);
  });

  // getRun

  test("getRun() returns null for another user's run and for a missing one", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    assert.equal(await store.getRun("bob", run.id), null);
    assert.equal(await store.getRun("alice", "missing"), null);
    assert.equal((await store.getRun("alice", run.id))?.id, run.id);
  });

  // listThreads

  test("listThreads() pages newest first with nextCursor only when older ones exist", async ({ store }) => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await chat(store, "alice", `c${i}`, { text: `thread ${i}` })).run.threadId);
    }
    await chat(store, "bob", "c0");
    const newestFirst = [...ids].reverse();

    const first = await store.listThreads("alice", { limit: 2 });
    assert.deepEqual(first.items.map((t) => t.id), newestFirst.slice(0, 2));
    assert.equal(typeof first.nextCursor, "string");
    const second = await store.listThreads("alice", { limit: 2, before: first.nextCursor });
    assert.deepEqual(second.items.map((t) => t.id), newestFirst.slice(2, 4));
    const third = await store.listThreads("alice", { limit: 2, before: second.nextCursor });
    assert.deepEqual(third.items.map((t) => t.id), newestFirst.slice(4));
    assert.equal(third.nextCursor, undefined);

    const exact = await store.listThreads("alice", { limit: 5 });
    assert.equal(exact.items.length, 5);
    assert.equal(exact.nextCursor, undefined);
    assert.deepEqual(await store.listThreads("carol", { limit: 5 }), { items: [] });
  });

  test("listThreads() stays stable when threads are added between pages", async ({ store }) => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await chat(store, "alice", `c${i}`)).run.threadId);
    const first = await store.listThreads("alice", { limit: 2 });
    await chat(store, "alice", "late-1");
    await chat(store, "alice", "late-2");
    const second = await store.listThreads("alice", { limit: 2, before: first.nextCursor });
    assert.deepEqual(second.items.map((t) => t.id), [ids[1], ids[0]]);
    assert.equal(second.nextCursor, undefined);
  });

  test("listThreads() throws RangeError for a malformed cursor", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.finishRun("alice", run.id, { status: "completed", reply: "r" });
    await chat(store, "alice", "c2");
    const messagePage = await store.listMessages("alice", run.threadId, { limit: 1 });
    const messageCursor = messagePage?.nextCursor;
    assert.equal(typeof messageCursor, "string");
    for (const before of ["", "garbage!", "dC4x=", "%%%", btoa("t.-1"), messageCursor!]) {
      await assert.rejects(() => store.listThreads("alice", { limit: 5, before }), RangeError);
    }
    await assert.rejects(() => store.listThreads("alice", { limit: 0 }), RangeError);
  });

  // listMessages

  test("listMessages() returns null when the thread is not the user's", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    assert.equal(await store.listMessages("bob", run.threadId, { limit: 10 }), null);
    assert.equal(await store.listMessages("alice", "missing", { limit: 10 }), null);
  });

  test("listMessages() pages from the newest, oldest first within a page", async ({ store }) => {
    const texts: string[] = [];
    let threadId: string | undefined;
    for (let i = 0; i < 4; i++) {
      const { run } = await chat(store, "alice", `c${i}`, { threadId, text: `q${i}` });
      threadId = run.threadId;
      await store.finishRun("alice", run.id, { status: "completed", reply: `a${i}` });
      texts.push(`q${i}`, `a${i}`);
    }
    const pages: string[][] = [];
    let before: string | undefined;
    for (;;) {
      const page = await store.listMessages("alice", threadId!, { limit: 3, before });
      assert.ok(page !== null);
      pages.push(page.items.map((m) => m.text));
      if (page.nextCursor === undefined) break;
      before = page.nextCursor;
    }
    assert.deepEqual(pages, [["a2", "q3", "a3"], ["q1", "a1", "q2"], ["q0", "a0"]]);
    const all = await store.listMessages("alice", threadId!, { limit: 8 });
    assert.deepEqual(all?.items.map((m) => m.text), texts);
    assert.equal(all?.nextCursor, undefined);
  });

  test("listMessages() throws RangeError for a malformed cursor", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    await chat(store, "alice", "c2");
    const threadCursor = (await store.listThreads("alice", { limit: 1 })).nextCursor;
    assert.equal(typeof threadCursor, "string");
    for (const before of ["", "not a cursor", btoa("m.abc"), threadCursor!]) {
      await assert.rejects(
        () => store.listMessages("alice", run.threadId, { limit: 5, before }),
        RangeError,
      );
    }
  });

  // threadHistory

  test("threadHistory() returns the newest turns before a run, oldest first, with their status", async ({ store }) => {
    const first = await chat(store, "alice", "c1", { text: "q1" });
    const threadId = first.run.threadId;
    await store.finishRun("alice", first.run.id, { status: "completed", reply: "a1" });
    const second = await chat(store, "alice", "c2", { threadId, text: "q2" });
    await store.finishRun("alice", second.run.id, {
      status: "failed",
      error: failure(),
      reply: "a2 so f",
    });
    const third = await chat(store, "alice", "c3", { threadId, text: "q3" });
    await store.finishRun("alice", third.run.id, { status: "cancelled", reply: "" });
    const current = await chat(store, "alice", "c4", { threadId, text: "q4" });
    await chat(store, "alice", "c5", { text: "another thread" });

    const request = { beforeRunId: current.run.id, limit: 20 };
    assert.deepEqual(await store.threadHistory("alice", threadId, request), [
      { role: "user", text: "q1", runStatus: "completed" },
      { role: "assistant", text: "a1", runStatus: "completed" },
      { role: "user", text: "q2", runStatus: "failed" },
      { role: "assistant", text: "a2 so f", runStatus: "failed" },
      { role: "user", text: "q3", runStatus: "cancelled" },
      { role: "assistant", text: "", runStatus: "cancelled" },
    ]);
    assert.deepEqual(await store.threadHistory("alice", threadId, { ...request, limit: 3 }), [
      { role: "assistant", text: "a2 so f", runStatus: "failed" },
      { role: "user", text: "q3", runStatus: "cancelled" },
      { role: "assistant", text: "", runStatus: "cancelled" },
    ]);
    assert.deepEqual(await store.threadHistory("alice", threadId, { ...request, limit: 0 }), []);
    // Before an earlier run: only what came before it.
    assert.deepEqual(
      await store.threadHistory("alice", threadId, { beforeRunId: second.run.id, limit: 20 }),
      [
        { role: "user", text: "q1", runStatus: "completed" },
        { role: "assistant", text: "a1", runStatus: "completed" },
      ],
    );
    assert.deepEqual(
      await store.threadHistory("alice", threadId, { beforeRunId: first.run.id, limit: 20 }),
      [],
    );
  });

  test("threadHistory() returns null for another user's thread or a run not of the thread", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    const elsewhere = await chat(store, "alice", "c2");
    const request = { beforeRunId: run.id, limit: 10 };
    assert.equal(await store.threadHistory("bob", run.threadId, request), null);
    assert.equal(await store.threadHistory("alice", "missing", request), null);
    assert.equal(
      await store.threadHistory("alice", run.threadId, {
        beforeRunId: elsewhere.run.id,
        limit: 10,
      }),
      null,
    );
    assert.equal(
      await store.threadHistory("alice", run.threadId, { beforeRunId: "missing", limit: 10 }),
      null,
    );
    for (const limit of [-1, 2.5]) {
      await assert.rejects(
        () => store.threadHistory("alice", run.threadId, { beforeRunId: run.id, limit }),
        RangeError,
      );
    }
  });

  // renameThread

  test("renameThread() stores the trimmed title, touches the thread and returns it", async ({ store, time }) => {
    const { run } = await chat(store, "alice", "c1", { text: "first words" });
    await waitPast(time, run.createdAt);
    const [renamed, span] = await during(
      time,
      () => store.renameThread("alice", run.threadId, "  Trip plans \n"),
    );
    assert.ok(renamed !== null);
    assert.equal(renamed.id, run.threadId);
    assert.equal(renamed.title, "Trip plans");
    assert.equal(renamed.createdAt, run.createdAt);
    assertWithin(renamed.updatedAt, span, "updatedAt");
    assert.deepEqual((await store.listThreads("alice", { limit: 10 })).items, [renamed]);
    // 200 characters are counted as code points.
    const longest = "😀".repeat(200);
    assert.equal((await store.renameThread("alice", run.threadId, longest))?.title, longest);
  });

  test("renameThread() returns null for another user's thread and rejects a bad title", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1", { text: "mine" });
    assert.equal(await store.renameThread("bob", run.threadId, "theirs"), null);
    assert.equal(await store.renameThread("alice", "missing", "theirs"), null);
    for (const title of ["", "   \n", "x".repeat(201), `${"😀".repeat(200)}x`]) {
      await assert.rejects(() => store.renameThread("alice", run.threadId, title), RangeError);
    }
    assert.equal((await store.listThreads("alice", { limit: 1 })).items[0].title, "mine");
  });

  // deleteThread

  test("deleteThread() removes the thread, its messages, runs and chat ids", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    const threadId = first.run.threadId;
    await store.finishRun("alice", first.run.id, { status: "completed", reply: "r" });
    const second = await chat(store, "alice", "c2", { threadId, text: "again" });
    const kept = await chat(store, "alice", "c3");
    const bobs = await chat(store, "bob", "c1");

    assert.equal(await store.deleteThread("bob", threadId), false);
    assert.equal(await store.deleteThread("alice", threadId), true);
    assert.equal(await store.listMessages("alice", threadId, { limit: 10 }), null);
    assert.equal(await store.getRun("alice", first.run.id), null);
    assert.equal(await store.getRun("alice", second.run.id), null);
    assert.deepEqual((await store.listThreads("alice", { limit: 10 })).items.map((t) => t.id), [
      kept.run.threadId,
    ]);
    // Its running run went too: its owner can no longer end it.
    assert.equal(
      await store.finishRun("alice", second.run.id, { status: "cancelled", reply: "" }),
      false,
    );
    // Its chat ids are free again; the other thread's is not.
    const repeat = await chat(store, "alice", "c1");
    assert.equal(repeat.kind, "started");
    assert.notEqual(repeat.run.threadId, threadId);
    assert.equal((await chatResult(store, "alice", "c3")).kind, "duplicate");
    assert.equal(await store.deleteThread("alice", threadId), false);
    assert.equal((await store.getRun("bob", bobs.run.id))?.status, "running");
  });

  test("deleteThread() frees the places of its runs in flight", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1", { maxActiveRuns: 1 });
    assert.deepEqual(await chatResult(store, "alice", "c2", { maxActiveRuns: 1 }), {
      kind: "too_many_runs",
    });
    assert.equal(await store.deleteThread("alice", run.threadId), true);
    assert.equal((await chatResult(store, "alice", "c2", { maxActiveRuns: 1 })).kind, "started");
  });

  // renewLeases and claimOrphanedRuns

  test("claimOrphanedRuns() hands a running run whose lease lapsed to one claimer, still running", async ({ store, time }) => {
    const live = await chat(store, "bob", "c1"); // a long lease: never claimed here
    const { run } = await chat(store, "alice", "c1", { leaseMs: SHORT_LEASE_MS });
    await store.recordRunStart("alice", run.id, 1);
    const [early, earlySpan] = await during(
      time,
      () => store.claimOrphanedRuns("instance-b", LONG_LEASE_MS, 10),
    );
    if (earlySpan.to < Date.parse(run.createdAt) + SHORT_LEASE_MS) assert.deepEqual(early, []);
    const [claimed, span] = await during(time, () => claimWhenDue(store, time, "instance-b"));
    // Claimed no sooner than the lease ended.
    assertNotBefore(isoOf(span.to), run.createdAt, SHORT_LEASE_MS);
    // Only its owner changed: the claimer ends it, with the reply it rebuilds.
    assert.deepEqual(claimed, [{ ...run, startSeq: 1, ownerInstance: "instance-b" }]);
    assert.deepEqual(await store.getRun("alice", run.id), claimed[0]);
    // The claimer now holds a fresh lease; the thread stays busy until the run ends.
    assert.deepEqual(await store.claimOrphanedRuns("instance-c", LONG_LEASE_MS, 10), []);
    assert.deepEqual(await chat(store, "alice", "c2", { threadId: run.threadId }), {
      kind: "thread_busy",
    });

    const ended = { status: "failed", error: INTERRUPTED_ERROR, reply: "So far" } as const;
    assert.equal(await store.finishRun("alice", run.id, ended), true);
    // The late owner cannot end it a second time.
    assert.equal(await store.finishRun("alice", run.id, { status: "cancelled", reply: "" }), false);
    const stored = await store.getRun("alice", run.id);
    assert.equal(stored?.status, "failed");
    assert.deepEqual(stored?.error, {
      code: "interrupted",
      message: "The instance running this run stopped",
    });
    assert.equal(stored?.reply, "So far");
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => [m.role, m.text, m.runStatus]), [
      ["user", "hello", "failed"],
      ["assistant", "So far", "failed"],
    ]);
    assert.equal(
      (await chat(store, "alice", "c2", { threadId: run.threadId })).kind,
      "started",
    );
    assert.equal((await store.getRun("bob", live.run.id))?.status, "running");
  });

  test("claimOrphanedRuns() claims a run again when its claimer died before ending it", async ({ store, time }) => {
    const { run } = await chat(store, "alice", "c1", { leaseMs: SHORT_LEASE_MS });
    const first = await claimWhenDue(store, time, "instance-b", SHORT_LEASE_MS);
    assert.deepEqual(first.map((r) => [r.id, r.status, r.ownerInstance]), [
      [run.id, "running", "instance-b"],
    ]);
    const second = await claimWhenDue(store, time, "instance-c");
    assert.deepEqual(second.map((r) => [r.id, r.status, r.ownerInstance]), [
      [run.id, "running", "instance-c"],
    ]);
  });

  test("claimOrphanedRuns() returns an ended run whose terminal event was never published", async ({ store, time }) => {
    const { run } = await chat(store, "alice", "c1", { leaseMs: SHORT_LEASE_MS });
    await store.finishRun("alice", run.id, { status: "completed", reply: "r" });
    const claimed = await claimWhenDue(store, time, "instance-b", SHORT_LEASE_MS);
    assert.equal(claimed.length, 1);
    assert.equal(claimed[0].status, "completed");
    assert.equal(claimed[0].reply, "r");
    assert.equal(claimed[0].ownerInstance, "instance-b");
    assert.equal(claimed[0].endSeq, null);
    // Unpublished still: returned again once the claimer's lease expires.
    const again = await claimWhenDue(store, time, "instance-c", SHORT_LEASE_MS);
    assert.deepEqual(again.map((r) => [r.id, r.ownerInstance]), [[run.id, "instance-c"]]);
    // Published: never returned again. A run whose lease ends after this one's is claimed,
    // so this one's lease has ended too by then.
    await store.recordRunEnd("alice", run.id, 9);
    const later = await chat(store, "bob", "c1", { leaseMs: SHORT_LEASE_MS });
    const last = await claimWhenDue(store, time, "instance-d");
    assert.deepEqual(last.map((r) => r.id), [later.run.id]);
  });

  test("claimOrphanedRuns() never returns a run whose lease was renewed", async ({ store, time }) => {
    const a = await chat(store, "alice", "c1", { leaseMs: SHORT_LEASE_MS });
    const b = await chat(store, "bob", "c1", { leaseMs: SHORT_LEASE_MS });
    await store.renewLeases(OWNER, [a.run.id], LONG_LEASE_MS);
    await store.renewLeases("instance-z", [b.run.id], LONG_LEASE_MS); // not its owner: ignored
    await store.renewLeases(OWNER, [], LONG_LEASE_MS);
    const claimed = await claimWhenDue(store, time, "instance-b");
    assert.deepEqual(claimed.map((r) => r.id), [b.run.id]);
    assert.equal((await store.getRun("alice", a.run.id))?.status, "running");
  });

  test("renewLeases() restarts a lease from the time of renewal", async ({ store, time }) => {
    const { run } = await chat(store, "alice", "c1");
    // Past the end a lease counted from the chat would have.
    await waitPast(time, new Date(Date.parse(run.createdAt) + RENEWED_LEASE_MS).toISOString());
    const [, renewal] = await during(
      time,
      () => store.renewLeases(OWNER, [run.id], RENEWED_LEASE_MS),
    );
    const [early, earlySpan] = await during(
      time,
      () => store.claimOrphanedRuns("instance-b", LONG_LEASE_MS, 10),
    );
    if (earlySpan.to < renewal.from + RENEWED_LEASE_MS) assert.deepEqual(early, []);
    const [[claimed], span] = await during(time, () => claimWhenDue(store, time, "instance-b"));
    assert.equal(claimed.id, run.id);
    assertNotBefore(isoOf(span.to), isoOf(renewal.from), RENEWED_LEASE_MS);
  });

  test("claimOrphanedRuns() claims at most limit runs per call", async ({ store, time }) => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await chat(store, `user-${i}`, "c1")).run.id);
    // One renewal gives the three the same end of lease.
    await store.renewLeases(OWNER, ids, SHORT_LEASE_MS);
    const first = await claimWhenDue(store, time, "instance-b", LONG_LEASE_MS, 2);
    const second = await store.claimOrphanedRuns("instance-b", LONG_LEASE_MS, 2);
    assert.equal(first.length, 2);
    assert.equal(second.length, 1);
    assert.deepEqual(new Set([...first, ...second].map((r) => r.id)), new Set(ids));
  });

  test("claimOrphanedRuns() hands each run to exactly one of concurrent claimers", async ({ store, time }) => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await chat(store, `user-${i % 2}`, `c${i}`)).run.id);
    await store.renewLeases(OWNER, ids, SHORT_LEASE_MS);
    const claimed: RunRecord[] = [];
    await eventually(time, "every run to be claimed", async () => {
      const batches = await Promise.all(
        ["b", "c", "d"].map((c) => store.claimOrphanedRuns(`instance-${c}`, LONG_LEASE_MS, 10)),
      );
      claimed.push(...batches.flat());
      return claimed.length;
    }, (count) => count >= ids.length);
    assert.equal(claimed.length, 6);
    assert.deepEqual(new Set(claimed.map((r) => r.id)), new Set(ids));
  });

  // ping

  test("ping() resolves when the store answers", async ({ store }) => {
    await store.ping();
  });
}

/** The run of a `started` result. */
type Started = { kind: "started"; run: RunRecord };

interface ChatOptions {
  threadId?: string;
  text?: string;
  /** @default {LONG_LEASE_MS} */
  leaseMs?: number;
  /** Absent: the store's default (no limit). */
  maxActiveRuns?: number;
}

async function chat(
  store: ChatStore,
  userId: string,
  chatId: string,
  options: ChatOptions = {},
): Promise<Started> {
  const result = await chatResult(store, userId, chatId, options);
  // Callers that expect another outcome compare the whole result instead.
  return result as Started;
}

function chatResult(
  store: ChatStore,
  userId: string,
  chatId: string,
  options: ChatOptions = {},
): Promise<BeginChatResult> {
  return store.beginChat({
    userId,
    chatId,
    text: options.text ?? "hello",
    ...(options.threadId === undefined ? {} : { threadId: options.threadId }),
    ownerInstance: OWNER,
    leaseMs: options.leaseMs ?? LONG_LEASE_MS,
    ...(options.maxActiveRuns === undefined ? {} : { maxActiveRuns: options.maxActiveRuns }),
  });
}

function failure() {
  return { code: "agent_error", message: "The agent failed" };
}

/** The store's clock read just before and just after a call, in epoch milliseconds. */
interface Span {
  readonly from: number;
  readonly to: number;
}

/** Runs `fn` between two readings of the store's clock. */
async function during<T>(time: StoreTime, fn: () => Promise<T>): Promise<[T, Span]> {
  const from = await time.now();
  const value = await fn();
  return [value, { from, to: await time.now() }];
}

/** Asserts that `iso` is an ISO 8601 UTC time the store's clock read during `span`. */
function assertWithin(iso: string, span: Span, what: string): void {
  assert.equal(new Date(iso).toISOString(), iso, `${what} is not ISO 8601 UTC: ${iso}`);
  const ms = Date.parse(iso);
  assert.ok(
    span.from <= ms && ms <= span.to,
    `${what} ${iso} is not from the store's clock, which read ${
      new Date(span.from).toISOString()
    } before the call and ${new Date(span.to).toISOString()} after it`,
  );
}

/** Epoch milliseconds as ISO 8601 UTC. */
function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

/** Asserts that `iso` is at least `ms` after `since` (a lease or a TTL was not cut short). */
function assertNotBefore(iso: string, since: string, ms: number): void {
  assert.ok(
    Date.parse(iso) >= Date.parse(since) + ms,
    `${iso} is less than ${ms} ms after ${since}`,
  );
}

/**
 * Calls `fn` until `done` accepts its value, letting {@link POLL_MS} of the store's time pass
 * between calls; fails once {@link WAIT_MS} of it have passed.
 */
async function eventually<T>(
  time: StoreTime,
  what: string,
  fn: () => Promise<T>,
  done: (value: T) => boolean,
): Promise<T> {
  const deadline = await time.now() + WAIT_MS;
  for (;;) {
    const value = await fn();
    if (done(value)) return value;
    if (await time.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await time.pass(POLL_MS);
  }
}

/** Waits until the store's clock has moved past `iso`, so that a later stamp differs. */
async function waitPast(time: StoreTime, iso: string): Promise<void> {
  await eventually(time, `the store's clock to pass ${iso}`, () => time.now(), (now) => {
    return now > Date.parse(iso);
  });
}

/** Polls `claimOrphanedRuns` until it returns something, and returns that. */
function claimWhenDue(
  store: ChatStore,
  time: StoreTime,
  claimer: string,
  leaseMs = LONG_LEASE_MS,
  limit = 10,
): Promise<RunRecord[]> {
  return eventually(
    time,
    "a lease to expire",
    () => store.claimOrphanedRuns(claimer, leaseMs, limit),
    (claimed) => claimed.length > 0,
  );
}
