/**
 * The {@link ChatStore} contract as one suite, registered once per implementation so the
 * memory and PostgreSQL stores cannot drift apart (SPEC §2, §3, §5, §7).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ChatStore, RunRecord } from "../../src/store/mod.ts";
import { ManualClock } from "./manual_clock.ts";

/** A store under test, with whatever it needs released on dispose. */
export interface ConformanceFixture extends AsyncDisposable {
  readonly store: ChatStore;
}

/** What the suite asks of a factory: every time value must come from `clock`. */
export interface ConformanceFactoryOptions {
  readonly clock: ManualClock;
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

const TTL_SECONDS = 600;
const LEASE_MS = 30_000;
const OWNER = "instance-a";

type TestContext = { store: ChatStore; clock: ManualClock };

/**
 * Registers the conformance tests, named `"<label>.<method>() <behaviour>"`.
 *
 * @param label The class name of the implementation, e.g. `MemoryStore`.
 * @param factory Creates an empty store on the given clock.
 */
export function registerChatStoreConformance(
  label: string,
  factory: ConformanceFactory,
  options: ConformanceOptions = {},
): void {
  function test(name: string, fn: (t: TestContext) => Promise<void>): void {
    Deno.test({
      name: `${label}.${name}`,
      ignore: options.ignore,
      permissions: options.permissions,
      async fn() {
        const clock = new ManualClock();
        await using fixture = await factory({ clock, chatIdTtlSeconds: TTL_SECONDS });
        await fn({ store: fixture.store, clock });
      },
    });
  }

  // beginChat

  test("beginChat() starts a run on a new thread titled with the trimmed text", async ({ store, clock }) => {
    const result = await chat(store, "alice", "c1", { text: "  Hello there \n" });
    assert.equal(result.kind, "started");
    const run = result.run;
    const now = iso(clock);
    assert.equal(run.userId, "alice");
    assert.equal(run.chatId, "c1");
    assert.equal(run.text, "  Hello there \n");
    assert.equal(run.status, "running");
    assert.equal(run.ownerInstance, OWNER);
    assert.equal(run.startSeq, null);
    assert.equal(run.endSeq, null);
    assert.equal(run.reply, null);
    assert.equal(run.error, null);
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

  test("beginChat() starts a run on the user's existing thread and touches it", async ({ store, clock }) => {
    const first = await chat(store, "alice", "c1");
    assert.equal(await store.finishRun("alice", first.run.id, { status: "cancelled" }), true);
    clock.advance(5_000);
    const second = await chat(store, "alice", "c2", {
      threadId: first.run.threadId,
      text: "again",
    });
    assert.equal(second.kind, "started");
    assert.equal(second.run.threadId, first.run.threadId);
    assert.notEqual(second.run.id, first.run.id);
    const { items } = await store.listThreads("alice", { limit: 10 });
    assert.equal(items.length, 1);
    assert.equal(items[0].updatedAt, iso(clock));
    const messages = await store.listMessages("alice", first.run.threadId, { limit: 10 });
    assert.deepEqual(messages?.items.map((m) => [m.role, m.text, m.runId]), [
      ["user", "hello", first.run.id],
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
    await store.finishRun("alice", first.run.id, { status: "cancelled" });
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
    await store.finishRun("alice", first.run.id, { status: "cancelled" });
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

  test("beginChat() frees a chat id once chatIdTtlSeconds have passed", async ({ store, clock }) => {
    const first = await chat(store, "alice", "c1");
    await store.finishRun("alice", first.run.id, { status: "completed", reply: "done" });
    clock.advance(TTL_SECONDS * 1000 - 1);
    assert.equal((await chat(store, "alice", "c1")).kind, "duplicate");
    clock.advance(1);
    const again = await chat(store, "alice", "c1", { text: "different text now" });
    assert.equal(again.kind, "started");
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
    await store.finishRun("bob", bobs.run.id, { status: "cancelled" });
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
      1,
    );
  });

  test("beginChat() returns thread_busy while the thread has a running run", async ({ store }) => {
    const first = await chat(store, "alice", "c1");
    const threadId = first.run.threadId;
    assert.deepEqual(await chat(store, "alice", "c2", { threadId }), { kind: "thread_busy" });
    // The refused id was not kept.
    await store.finishRun("alice", first.run.id, { status: "failed", error: failure() });
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
    await store.finishRun("alice", first.run.id, { status: "cancelled" });
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

  test("finishRun() completes a running run once and stores the reply", async ({ store, clock }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.recordRunStart("alice", run.id, 1);
    clock.advance(2_000);
    const finishedAt = iso(clock);
    assert.equal(
      await store.finishRun("alice", run.id, { status: "completed", reply: "the reply" }),
      true,
    );
    assert.equal(
      await store.finishRun("alice", run.id, { status: "failed", error: failure() }),
      false,
    );
    const stored = await store.getRun("alice", run.id);
    assert.equal(stored?.status, "completed");
    assert.equal(stored?.reply, "the reply");
    assert.equal(stored?.error, null);
    assert.equal(stored?.finishedAt, finishedAt);
    assert.equal(stored?.endSeq, null);
    const [thread] = (await store.listThreads("alice", { limit: 1 })).items;
    assert.equal(thread.updatedAt, finishedAt);
    const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
    assert.deepEqual(
      messages?.items.map((m) => ({ role: m.role, text: m.text, runId: m.runId, seq: m.seq })),
      [
        { role: "user", text: "hello", runId: run.id, seq: 1 },
        { role: "assistant", text: "the reply", runId: run.id, seq: null },
      ],
    );
    assert.equal(messages?.items[1].createdAt, finishedAt);
  });

  test("finishRun() records a failure or a cancellation without a message", async ({ store }) => {
    const a = await chat(store, "alice", "c1");
    const b = await chat(store, "alice", "c2");
    assert.equal(
      await store.finishRun("alice", a.run.id, { status: "failed", error: failure() }),
      true,
    );
    assert.equal(await store.finishRun("alice", b.run.id, { status: "cancelled" }), true);
    const failed = await store.getRun("alice", a.run.id);
    assert.equal(failed?.status, "failed");
    assert.deepEqual(failed?.error, failure());
    assert.equal(failed?.reply, null);
    const cancelled = await store.getRun("alice", b.run.id);
    assert.equal(cancelled?.status, "cancelled");
    assert.equal(cancelled?.error, null);
    for (const run of [a.run, b.run]) {
      const messages = await store.listMessages("alice", run.threadId, { limit: 10 });
      assert.deepEqual(messages?.items.map((m) => m.role), ["user"]);
    }
  });

  test("finishRun() returns false for another user's run or a missing one", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    assert.equal(await store.finishRun("bob", run.id, { status: "cancelled" }), false);
    assert.equal(await store.finishRun("alice", "missing", { status: "cancelled" }), false);
    assert.equal((await store.getRun("alice", run.id))?.status, "running");
  });

  test("finishRun() lets exactly one of racing callers win", async ({ store }) => {
    const { run } = await chat(store, "alice", "c1");
    const results = await Promise.all([
      store.finishRun("alice", run.id, { status: "completed", reply: "a" }),
      store.finishRun("alice", run.id, { status: "cancelled" }),
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

  test("listThreads() pages newest first with nextCursor only when older ones exist", async ({ store, clock }) => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await chat(store, "alice", `c${i}`, { text: `thread ${i}` })).run.threadId);
      clock.advance(1);
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

  // renewLeases and claimOrphanedRuns

  test("claimOrphanedRuns() fails a running run whose lease expired, exactly once", async ({ store, clock }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.recordRunStart("alice", run.id, 1);
    clock.advance(LEASE_MS - 1);
    assert.deepEqual(await store.claimOrphanedRuns("instance-b", LEASE_MS, 10), []);
    clock.advance(1);
    const claimedAt = iso(clock);
    const claimed = await store.claimOrphanedRuns("instance-b", LEASE_MS, 10);
    assert.equal(claimed.length, 1);
    assert.deepEqual(claimed[0], {
      ...run,
      status: "failed",
      startSeq: 1,
      ownerInstance: "instance-b",
      error: { code: "interrupted", message: "The instance running this run stopped" },
      finishedAt: claimedAt,
    });
    assert.deepEqual(await store.getRun("alice", run.id), claimed[0]);
    // The claimer now holds a fresh lease.
    assert.deepEqual(await store.claimOrphanedRuns("instance-c", LEASE_MS, 10), []);
    // Its owner can no longer finish it.
    assert.equal(await store.finishRun("alice", run.id, { status: "cancelled" }), false);
    // The thread is free again.
    assert.equal(
      (await chat(store, "alice", "c2", { threadId: run.threadId })).kind,
      "started",
    );
  });

  test("claimOrphanedRuns() returns an ended run whose terminal event was never published", async ({ store, clock }) => {
    const { run } = await chat(store, "alice", "c1");
    await store.finishRun("alice", run.id, { status: "completed", reply: "r" });
    clock.advance(LEASE_MS);
    const claimed = await store.claimOrphanedRuns("instance-b", 5_000, 10);
    assert.equal(claimed.length, 1);
    assert.equal(claimed[0].status, "completed");
    assert.equal(claimed[0].reply, "r");
    assert.equal(claimed[0].ownerInstance, "instance-b");
    assert.equal(claimed[0].endSeq, null);
    // Unpublished still: returned again once the claimer's lease expires.
    clock.advance(5_000);
    assert.equal((await store.claimOrphanedRuns("instance-c", 5_000, 10)).length, 1);
    await store.recordRunEnd("alice", run.id, 9);
    clock.advance(5_000);
    assert.deepEqual(await store.claimOrphanedRuns("instance-d", 5_000, 10), []);
  });

  test("claimOrphanedRuns() never returns a run whose lease was renewed", async ({ store, clock }) => {
    const a = await chat(store, "alice", "c1");
    const b = await chat(store, "bob", "c1");
    clock.advance(LEASE_MS - 1_000);
    await store.renewLeases(OWNER, [a.run.id], LEASE_MS);
    await store.renewLeases("instance-z", [b.run.id], LEASE_MS); // not its owner: ignored
    await store.renewLeases(OWNER, [], LEASE_MS);
    clock.advance(1_000);
    const claimed = await store.claimOrphanedRuns("instance-b", LEASE_MS, 10);
    assert.deepEqual(claimed.map((r) => r.id), [b.run.id]);
    clock.advance(LEASE_MS - 1_001);
    assert.deepEqual(await store.claimOrphanedRuns("instance-b", LEASE_MS, 10), []);
    assert.equal((await store.getRun("alice", a.run.id))?.status, "running");
  });

  test("claimOrphanedRuns() claims at most limit runs per call", async ({ store, clock }) => {
    for (let i = 0; i < 3; i++) await chat(store, `user-${i}`, "c1");
    clock.advance(LEASE_MS);
    const first = await store.claimOrphanedRuns("instance-b", LEASE_MS, 2);
    const second = await store.claimOrphanedRuns("instance-b", LEASE_MS, 2);
    assert.equal(first.length, 2);
    assert.equal(second.length, 1);
    const ids = new Set([...first, ...second].map((r) => r.id));
    assert.equal(ids.size, 3);
  });

  test("claimOrphanedRuns() hands each run to exactly one of concurrent claimers", async ({ store, clock }) => {
    for (let i = 0; i < 6; i++) await chat(store, `user-${i % 2}`, `c${i}`);
    clock.advance(LEASE_MS);
    const batches = await Promise.all(
      ["b", "c", "d"].map((c) => store.claimOrphanedRuns(`instance-${c}`, LEASE_MS, 10)),
    );
    const claimed = batches.flat();
    assert.equal(claimed.length, 6);
    assert.equal(new Set(claimed.map((r) => r.id)).size, 6);
  });

  // ping

  test("ping() resolves when the store answers", async ({ store }) => {
    await store.ping();
  });
}

/** The run of a `started` result. */
type Started = { kind: "started"; run: RunRecord };

async function chat(
  store: ChatStore,
  userId: string,
  chatId: string,
  options: { threadId?: string; text?: string } = {},
): Promise<Started> {
  const result = await chatResult(store, userId, chatId, options);
  // Callers that expect another outcome compare the whole result instead.
  return result as Started;
}

function chatResult(
  store: ChatStore,
  userId: string,
  chatId: string,
  options: { threadId?: string; text?: string } = {},
) {
  return store.beginChat({
    userId,
    chatId,
    text: options.text ?? "hello",
    ...(options.threadId === undefined ? {} : { threadId: options.threadId }),
    ownerInstance: OWNER,
    leaseMs: LEASE_MS,
  });
}

function failure() {
  return { code: "agent_error", message: "The agent failed" };
}

function iso(clock: ManualClock): string {
  return new Date(clock.now()).toISOString();
}
