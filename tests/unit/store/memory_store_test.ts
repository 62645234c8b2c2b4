import assert from "node:assert/strict";
import { MemoryStore } from "../../../src/store/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { manualStoreTime, registerChatStoreConformance } from "../../_helpers/store_conformance.ts";

registerChatStoreConformance("MemoryStore", ({ chatIdTtlSeconds }) => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock, chatIdTtlSeconds });
  return Promise.resolve({
    store,
    time: manualStoreTime(clock),
    [Symbol.asyncDispose]: () => store.close(),
  });
});

const LEASE_MS = 30_000;

function begin(store: MemoryStore, userId: string, chatId: string, threadId?: string) {
  return store.beginChat({
    userId,
    chatId,
    text: `text of ${chatId}`,
    ...(threadId === undefined ? {} : { threadId }),
    ownerInstance: "i1",
    leaseMs: LEASE_MS,
  });
}

async function started(store: MemoryStore, userId: string, chatId: string, threadId?: string) {
  const result = await begin(store, userId, chatId, threadId);
  assert.equal(result.kind, "started");
  return result.run;
}

Deno.test("MemoryStore.beginChat() drops the oldest idle thread beyond maxThreadsPerUser", async () => {
  await using store = new MemoryStore({ clock: new ManualClock(), maxThreadsPerUser: 3 });
  const busy = await started(store, "alice", "c0"); // keeps running: never dropped
  const idle1 = await started(store, "alice", "c1");
  await store.finishRun("alice", idle1.id, { status: "completed", reply: "r1" });
  const idle2 = await started(store, "alice", "c2");
  await store.finishRun("alice", idle2.id, { status: "cancelled", reply: "" });
  const fourth = await started(store, "alice", "c3");

  const { items } = await store.listThreads("alice", { limit: 10 });
  assert.deepEqual(items.map((t) => t.id), [fourth.threadId, idle2.threadId, busy.threadId]);
  assert.equal(await store.listMessages("alice", idle1.threadId, { limit: 10 }), null);
  assert.equal(await store.getRun("alice", idle1.id), null);
  // Its chat id went with it.
  assert.equal((await begin(store, "alice", "c1")).kind, "started");
  // Other users are not affected.
  await started(store, "bob", "c0");
  assert.equal((await store.listThreads("bob", { limit: 10 })).items.length, 1);
});

Deno.test("MemoryStore.beginChat() exceeds maxThreadsPerUser while every thread is running", async () => {
  await using store = new MemoryStore({ clock: new ManualClock(), maxThreadsPerUser: 2 });
  for (const id of ["c0", "c1", "c2"]) await started(store, "alice", id);
  assert.equal((await store.listThreads("alice", { limit: 10 })).items.length, 3);
});

Deno.test("MemoryStore.finishRun() drops the oldest messages beyond maxMessagesPerThread", async () => {
  await using store = new MemoryStore({ clock: new ManualClock(), maxMessagesPerThread: 3 });
  const first = await started(store, "alice", "c0");
  await store.finishRun("alice", first.id, { status: "completed", reply: "a0" });
  const second = await started(store, "alice", "c1", first.threadId);
  await store.finishRun("alice", second.id, { status: "completed", reply: "a1" });

  const messages = await store.listMessages("alice", first.threadId, { limit: 10 });
  assert.deepEqual(messages?.items.map((m) => m.text), ["a0", "text of c1", "a1"]);
  // The first run still has a message; after one more exchange it is forgotten entirely.
  assert.equal((await store.getRun("alice", first.id))?.status, "completed");
  const third = await started(store, "alice", "c2", first.threadId);
  assert.equal(await store.getRun("alice", first.id), null);
  assert.equal((await store.getRun("alice", third.id))?.status, "running");
});

// Exact boundaries, which only a manual clock can show (the shared suite polls).

Deno.test("MemoryStore.claimOrphanedRuns() claims a run the moment its lease ends, not before", async () => {
  const clock = new ManualClock();
  await using store = new MemoryStore({ clock });
  const run = await started(store, "alice", "c0");
  clock.advance(LEASE_MS - 1_000);
  await store.renewLeases("i1", [run.id], LEASE_MS);
  clock.advance(LEASE_MS - 1);
  assert.deepEqual(await store.claimOrphanedRuns("i2", LEASE_MS, 10), []);
  clock.advance(1);
  const claimed = await store.claimOrphanedRuns("i2", LEASE_MS, 10);
  assert.deepEqual(claimed.map((r) => [r.id, r.status, r.ownerInstance]), [[
    run.id,
    "running",
    "i2",
  ]]);
  // The claimer's lease is as exact.
  clock.advance(LEASE_MS - 1);
  assert.deepEqual(await store.claimOrphanedRuns("i3", LEASE_MS, 10), []);
  clock.advance(1);
  assert.deepEqual((await store.claimOrphanedRuns("i3", LEASE_MS, 10)).map((r) => r.id), [run.id]);
});

Deno.test("MemoryStore.beginChat() frees a chat id exactly chatIdTtlSeconds after its use", async () => {
  const clock = new ManualClock();
  await using store = new MemoryStore({ clock, chatIdTtlSeconds: 60 });
  const first = await started(store, "alice", "c0");
  await store.finishRun("alice", first.id, { status: "cancelled", reply: "" });
  clock.advance(60_000 - 1);
  assert.equal((await begin(store, "alice", "c0")).kind, "duplicate");
  clock.advance(1);
  assert.equal((await begin(store, "alice", "c0")).kind, "started");
});

Deno.test("MemoryStore() sweeps idle users without a running run until close()", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock, idleUserSeconds: 3_600, sweepIntervalMs: 60_000 });
  const alice = await started(store, "alice", "c0");
  await store.finishRun("alice", alice.id, { status: "completed", reply: "r" });
  const bob = await started(store, "bob", "c0"); // still running: kept however idle
  const carol = await started(store, "carol", "c0");
  await store.finishRun("carol", carol.id, { status: "cancelled", reply: "" });

  clock.advance(3_000_000);
  await store.listThreads("carol", { limit: 1 }); // a read counts as activity
  clock.advance(600_000 + 60_000);
  assert.equal(store.userCount, 2);
  assert.deepEqual(await store.listThreads("alice", { limit: 10 }), { items: [] });
  assert.equal(await store.getRun("alice", alice.id), null);
  // The user is gone, and so is the chat id.
  assert.equal((await begin(store, "alice", "c0")).kind, "started");
  assert.equal((await store.getRun("bob", bob.id))?.status, "running");
  assert.equal((await store.listThreads("carol", { limit: 10 })).items.length, 1);

  await store.close();
  assert.equal(clock.pending, 0);
  clock.advance(10 * 3_600_000);
  assert.equal(store.userCount, 3);
});

Deno.test("MemoryStore.close() leaves no timer when no user was ever seen", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  assert.equal(clock.pending, 0);
  await store.listThreads("nobody", { limit: 5 });
  assert.equal(clock.pending, 0);
  await begin(store, "alice", "c0");
  assert.equal(clock.pending, 1);
  await store.close();
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryStore() throws RangeError for a bad bound", () => {
  assert.throws(() => new MemoryStore({ maxThreadsPerUser: 0 }), RangeError);
  assert.throws(() => new MemoryStore({ maxMessagesPerThread: 1.5 }), RangeError);
  assert.throws(() => new MemoryStore({ idleUserSeconds: -1 }), RangeError);
  assert.throws(() => new MemoryStore({ chatIdTtlSeconds: Number.NaN }), RangeError);
});
