/**
 * The semantics every {@link EventEngine} must have, written once: `engineConformance()`
 * registers one `Deno.test` per rule for an engine built by a factory. The memory engine runs
 * it in tests/unit/bus, the Redis engine in tests/integration/bus.
 *
 * Time that matters to the engine (retention ages, connection expiry) comes from a
 * {@link ManualClock}; waits on live delivery are bounded by a real-time deadline.
 *
 * @module
 */
import assert from "node:assert/strict";
import type {
  ApprovalDecision,
  EventEngine,
  EventListener,
  NewApprovalRequest,
  NewEvent,
  PublishResult,
  ResolveApprovalResult,
  UserEvent,
} from "../../src/bus/event_engine.ts";
import type { EventRetention } from "../../src/bus/event_retention.ts";
import { DependencyUnavailableError } from "../../src/_util/dependency_unavailable_error.ts";
import type { ManualClock } from "./manual_clock.ts";

/** What a conformance case is given: the engine under test and its clock. */
export interface EngineFixture {
  /** The engine under test. */
  readonly engine: EventEngine;
  /** The clock every engine of the fixture reads. */
  readonly clock: ManualClock;
  /** Another engine over the same logs: a second instance when shared, else `engine` itself. */
  peer(): Promise<EventEngine>;
  /** Closes every engine of the fixture and removes what it stored. */
  dispose(): Promise<void>;
}

/** Options of {@link engineConformance}. */
export interface EngineConformanceOptions {
  /** The class named in test names, e.g. `MemoryEngine`. */
  readonly name: string;
  /** Builds a fresh fixture (own data) for one test. */
  readonly create: (options: { readonly retention: EventRetention }) => Promise<EngineFixture>;
  /** Applied to every case, e.g. `{ ignore: true }` when the service is missing. */
  readonly testOptions?: Omit<Deno.TestDefinition, "name" | "fn">;
}

/** Retention used unless a case needs a small one. */
export const DEFAULT_TEST_RETENTION: EventRetention = { count: 1000, seconds: 3600 };

/** Builds an event for `runId`; `name` defaults to `agent_thinking`. */
export function newEvent(runId: string, name = "agent_thinking", data = {}): NewEvent {
  return { threadId: `thread-${runId}`, runId, name, data, ts: "2026-01-01T00:00:00.000Z" };
}

/** Publishes and asserts the event was accepted; returns it with its seq. */
export async function publishOk(
  engine: EventEngine,
  userId: string,
  event: NewEvent,
): Promise<UserEvent> {
  const result = await engine.publish(userId, event);
  assert.ok(result.published, `expected ${event.name} of ${event.runId} to be published`);
  return result.event;
}

/** A unique user id, so cases never share a log. */
export function userId(label = "user"): string {
  return `${label}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Records what a listener receives and lets a test wait for it, with a deadline. */
export class EventRecorder {
  /** Everything received, in arrival order. */
  readonly received: { readonly event: UserEvent; readonly epoch: string }[] = [];
  #waiters = new Set<() => void>();

  /** The listener to subscribe. */
  readonly listener: EventListener = (event, epoch) => {
    this.received.push({ event, epoch });
    for (const check of [...this.#waiters]) check();
  };

  /** Seqs received, in arrival order. */
  get seqs(): number[] {
    return this.received.map((r) => r.event.seq);
  }

  /** Resolves once `predicate()` holds; rejects after `timeoutMs` of real time. */
  waitFor(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const deadline: { timer?: ReturnType<typeof setTimeout> } = {};
      const check = () => {
        if (!predicate()) return;
        this.#waiters.delete(check);
        clearTimeout(deadline.timer);
        resolve();
      };
      this.#waiters.add(check);
      // Under `deno test`, the first timer a test creates may run pending microtasks (events
      // can arrive inside setTimeout), so the waiter is registered first and checked again after.
      deadline.timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; got ${this.seqs}`));
      }, timeoutMs);
      check();
    });
  }

  /** Resolves once an event with `seq` or later arrived. */
  waitForSeq(seq: number, timeoutMs?: number): Promise<void> {
    return this.waitFor(() => this.seqs.some((s) => s >= seq), `seq ${seq}`, timeoutMs);
  }
}

/** Awaits `promise`, failing with `what` when it takes longer than `ms` of real time. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An approval request of `runId` (thread `thread-<runId>`) for `toolCallId`. */
export function approvalRequest(
  runId: string,
  toolCallId: string,
  options: { readonly input?: NewApprovalRequest["data"]["input"] } = {},
): NewApprovalRequest {
  const { input = { path: "/tmp/x" } } = options;
  return {
    threadId: `thread-${runId}`,
    runId,
    data: { toolCallId, tool: "write_file", input },
    ts: "2026-01-01T00:00:01.000Z",
  };
}

/** A decision on `toolCallId` of `runId`; a user's approval unless `overrides` say otherwise. */
export function decision(
  runId: string,
  toolCallId: string,
  overrides: Partial<ApprovalDecision> = {},
): ApprovalDecision {
  return {
    runId,
    toolCallId,
    approved: true,
    by: "user",
    ts: "2026-01-01T00:00:02.000Z",
    ...overrides,
  };
}

/**
 * Resolves once the engine's clock has reached `isoTime` (the memory engine's by `clock`, the
 * Redis engine's in real time), polling `engine.now()`; rejects after `timeoutMs` of real time.
 */
export async function untilEngineTime(
  fixture: { readonly engine: EventEngine; readonly clock: ManualClock },
  isoTime: string,
): Promise<void> {
  const { engine, clock } = fixture;
  const timeoutMs = 10_000;
  const target = Date.parse(isoTime);
  if (clock.now() < target) clock.advance(target - clock.now());
  const deadline = performance.now() + timeoutMs;
  while ((await engine.now()) < target) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${isoTime}`);
  }
}

/** Asserts `seqs` is exactly `from, from+1, …, to`. */
export function assertSeqRange(seqs: readonly number[], from: number, to: number): void {
  const expected = Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
  assert.deepEqual([...seqs], expected);
}

/** Registers the conformance cases for one engine. */
export function engineConformance(options: EngineConformanceOptions): void {
  const { name } = options;

  function test(
    title: string,
    fn: (fixture: EngineFixture) => Promise<void>,
    retention: EventRetention = DEFAULT_TEST_RETENTION,
  ): void {
    Deno.test({
      ...options.testOptions,
      name: `${name}.${title}`,
      async fn() {
        const fixture = await options.create({ retention });
        try {
          await fn(fixture);
        } finally {
          await fixture.dispose();
        }
      },
    });
  }

  // ---- runSeqs ------------------------------------------------------------------------------

  test("runSeqs() gives a run's start seq while in flight and its end seq once ended", async ({ engine }) => {
    const alice = userId("alice");
    assert.deepEqual(await engine.runSeqs(alice, ["r1"]), new Map());
    await publishOk(engine, alice, newEvent("r0", "agent_thinking"));
    await publishOk(engine, alice, newEvent("r1", "agent_started"));
    await publishOk(engine, alice, newEvent("r1", "agent_thinking"));
    assert.deepEqual(
      await engine.runSeqs(alice, ["r1", "nope"]),
      new Map([["r1", { startSeq: 2, endSeq: undefined }]]),
    );
    await publishOk(engine, alice, newEvent("r1", "agent_completed"));
    const ended = (await engine.runSeqs(alice, ["r1"])).get("r1");
    assert.equal(ended?.endSeq, 4);
    assert.deepEqual(await engine.runSeqs(userId("bob"), ["r1"]), new Map(), "scoped to the user");
  });

  // ---- publish ------------------------------------------------------------------------------

  test("publish() assigns each user's seqs 1, 2, 3 in order", async ({ engine }) => {
    const alice = userId("alice");
    const bob = userId("bob");
    const first = await engine.publish(alice, newEvent("r1", "agent_started", { text: "hi" }));
    assert.ok(first.published);
    assert.equal(first.event.seq, 1);
    assert.equal(typeof first.epoch, "string");
    assert.ok(first.epoch.length > 0);
    assert.deepEqual(first.event, { seq: 1, ...newEvent("r1", "agent_started", { text: "hi" }) });
    assert.equal((await publishOk(engine, alice, newEvent("r1"))).seq, 2);
    assert.equal((await publishOk(engine, bob, newEvent("r2"))).seq, 1);
    const third = await engine.publish(alice, newEvent("r1"));
    assert.ok(third.published);
    assert.equal(third.event.seq, 3);
    assert.equal(third.epoch, first.epoch);
  });

  test("publish() gives concurrent publishers gap-free, distinct seqs", async (fixture) => {
    const user = userId();
    const peer = await fixture.peer();
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => (i % 2 ? peer : fixture.engine).publish(user, newEvent(`r${i % 7}`)),
      ),
    );
    const seqs = results.map((r) => {
      assert.ok(r.published);
      return r.event.seq;
    }).sort((a, b) => a - b);
    assertSeqRange(seqs, 1, 200);
    assert.equal((await fixture.engine.catchUp(user)).seq, 200);
  });

  test("publish() tracks agent_started as active and a terminal event as its end", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    await publishOk(engine, user, newEvent("r2", "agent_started"));
    await publishOk(engine, user, newEvent("r1"));
    let snapshot = await engine.catchUp(user);
    assert.deepEqual(snapshot.activeRuns, [
      { runId: "r1", threadId: "thread-r1", startSeq: 1 },
      { runId: "r2", threadId: "thread-r2", startSeq: 2 },
    ]);
    for (const [runId, terminal] of [["r1", "agent_completed"], ["r2", "agent_cancelled"]]) {
      await publishOk(engine, user, newEvent(runId, terminal));
    }
    await publishOk(engine, user, newEvent("r3", "agent_started"));
    await publishOk(engine, user, newEvent("r3", "agent_failed"));
    snapshot = await engine.catchUp(user);
    assert.deepEqual(snapshot.activeRuns, []);
    assert.equal(snapshot.seq, 7);
  });

  test("publish() refuses any event for a run that has ended, appending nothing", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    const end = await publishOk(engine, user, newEvent("r1", "agent_completed"));
    for (const late of ["agent_thinking", "agent_failed", "agent_started"]) {
      const result = await engine.publish(user, newEvent("r1", late));
      assert.deepEqual(result, { published: false, reason: "run_ended", endSeq: end.seq });
    }
    assert.equal((await engine.catchUp(user)).seq, 2);
    assert.equal((await publishOk(engine, user, newEvent("r2"))).seq, 3);
  });

  test("publish() accepts exactly one of two racing terminal events", async (fixture) => {
    const user = userId();
    const peer = await fixture.peer();
    for (let round = 0; round < 10; round++) {
      const runId = `run-${round}`;
      await publishOk(fixture.engine, user, newEvent(runId, "agent_started"));
      const results: PublishResult[] = await Promise.all([
        fixture.engine.publish(user, newEvent(runId, "agent_completed")),
        peer.publish(user, newEvent(runId, "agent_failed")),
        fixture.engine.publish(user, newEvent(runId, "agent_cancelled")),
      ]);
      const won = results.filter((r) => r.published);
      assert.equal(won.length, 1, `round ${round}`);
      const endSeq = won[0].published ? won[0].event.seq : 0;
      for (const lost of results.filter((r) => !r.published)) {
        assert.deepEqual(lost, { published: false, reason: "run_ended", endSeq });
      }
    }
    assert.equal((await fixture.engine.catchUp(user)).seq, 20);
  });

  test("publish() publishes events of a run it does not know", async ({ engine }) => {
    const user = userId();
    assert.equal((await publishOk(engine, user, newEvent("lost", "tool_completed"))).seq, 1);
    assert.equal((await publishOk(engine, user, newEvent("lost", "agent_failed"))).seq, 2);
    const snapshot = await engine.catchUp(user);
    assert.deepEqual(snapshot.activeRuns, []);
    const refused = await engine.publish(user, newEvent("lost"));
    assert.deepEqual(refused, { published: false, reason: "run_ended", endSeq: 2 });
  });

  // ---- publishMany --------------------------------------------------------------------------

  test("publishMany() gives a batch consecutive seqs, in order, and delivers it in order", async (fixture) => {
    const user = userId();
    const recorder = new EventRecorder();
    const sub = await fixture.engine.subscribe(user, recorder.listener);
    await publishOk(fixture.engine, user, newEvent("r0", "agent_started")); // 1
    const batch = [
      newEvent("r1", "agent_started", { text: "hi" }),
      ...Array.from({ length: 5 }, (_, i) => newEvent("r1", "agent_delta", { text: `${i}` })),
      newEvent("r0", "agent_thinking", { i: 1 }),
    ];
    const results = await fixture.engine.publishMany(user, batch);
    assert.deepEqual(
      results.map((r) => r.published ? r.event : r),
      batch.map((event, i) => ({ seq: 2 + i, ...event })),
    );
    assert.deepEqual(await fixture.engine.publishMany(user, []), []);
    await recorder.waitForSeq(8);
    assertSeqRange(recorder.seqs, 1, 8);
    assert.deepEqual(recorder.received.slice(1).map((r) => r.event.data), batch.map((e) => e.data));
    const snapshot = await fixture.engine.catchUp(user);
    assert.deepEqual(snapshot.activeRuns.map((r) => [r.runId, r.startSeq]), [["r0", 1], ["r1", 2]]);
    sub.unsubscribe();
  });

  test("publishMany() applies each event's rules in order: nothing after an end, no purged thread", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("gone", "agent_started")); // 1
    await engine.purgeThread(user, "thread-gone");
    const results = await engine.publishMany(user, [
      newEvent("r1", "agent_started"), // 2
      newEvent("gone"), // purged thread
      newEvent("r1"), // 3
      newEvent("r1", "agent_completed"), // 4
      newEvent("r1"), // after its end
      newEvent("r1", "agent_failed"), // a second end
      newEvent("r2", "agent_started"), // 5
    ]);
    assert.deepEqual(results.map((r) => r.published ? r.event.seq : r), [
      2,
      { published: false, reason: "thread_purged" },
      3,
      4,
      { published: false, reason: "run_ended", endSeq: 4 },
      { published: false, reason: "run_ended", endSeq: 4 },
      5,
    ]);
    const range = await engine.readAfter(user, 0);
    assert.deepEqual(range.events.map((e) => [e.seq, e.runId, e.name]), [
      [2, "r1", "agent_started"],
      [3, "r1", "agent_thinking"],
      [4, "r1", "agent_completed"],
      [5, "r2", "agent_started"],
    ]);
    assert.deepEqual((await engine.catchUp(user)).activeRuns.map((r) => r.runId), ["r2"]);
    assert.deepEqual((await engine.runSeqs(user, ["r1"])).get("r1"), {
      startSeq: undefined,
      endSeq: 4,
    });
  });

  test("publishMany() of one run ends it mid-batch and refuses the rest, then all of it", async ({ engine }) => {
    const user = userId();
    const results = await engine.publishMany(user, [
      newEvent("r1", "agent_started"), // 1
      newEvent("r1"), // 2
      newEvent("r1", "agent_completed"), // 3
      newEvent("r1"),
      newEvent("r1", "agent_failed"),
    ]);
    const ended = { published: false, reason: "run_ended", endSeq: 3 };
    assert.deepEqual(results.map((r) => r.published ? r.event.seq : r), [1, 2, 3, ended, ended]);
    assert.deepEqual(
      await engine.publishMany(user, [newEvent("r1"), newEvent("r1")]),
      [ended, ended],
    );
    await publishOk(engine, user, newEvent("r2", "agent_started")); // 4
    await engine.purgeThread(user, "thread-r2");
    const purged = { published: false, reason: "thread_purged" };
    assert.deepEqual(
      await engine.publishMany(user, [newEvent("r2"), newEvent("r2", "agent_completed")]),
      [purged, purged],
    );
    const range = await engine.readAfter(user, 0);
    assert.deepEqual(range.events.map((e) => [e.seq, e.name]), [
      [1, "agent_started"],
      [2, "agent_thinking"],
      [3, "agent_completed"],
    ]);
    assert.equal(range.seq, 4);
    assert.deepEqual((await engine.catchUp(user)).activeRuns, []);
  });

  test(
    "publishMany() keeps retention by count exact inside a batch, and reads start mid-batch",
    async ({ engine }) => {
      const user = userId();
      await publishOk(engine, user, newEvent("r0")); // 1
      await engine.publishMany(user, Array.from({ length: 8 }, () => newEvent("r1"))); // 2..9
      const all = await engine.readAfter(user, 0);
      assert.equal(all.complete, false);
      assert.deepEqual(all.events.map((e) => e.seq), [5, 6, 7, 8, 9]);
      const mid = await engine.readAfter(user, 6);
      assert.deepEqual([mid.complete, mid.events.map((e) => e.seq)], [true, [7, 8, 9]]);
      assert.equal((await engine.readAfter(user, 4)).complete, true);
      assert.equal((await engine.readAfter(user, 3)).complete, false);
      const { epoch } = await engine.catchUp(user);
      const resumed = await engine.catchUp(user, { epoch, after: 5 });
      assert.deepEqual([resumed.resumed, resumed.events.map((e) => e.seq)], [true, [6, 7, 8, 9]]);
      assert.equal((await engine.catchUp(user, { epoch, after: 3 })).resumed, false);
    },
    { count: 5, seconds: 3600 },
  );

  test(
    "publishMany() ages out a batch's events before a run in flight and keeps the run's",
    async ({ engine, clock }) => {
      const user = userId();
      const sub = await engine.subscribe(user, () => {}); // keeps a memory log from being swept
      await engine.publishMany(user, [
        newEvent("stray"), // 1
        newEvent("stray", "agent_completed"), // 2
        newEvent("a", "agent_started"), // 3
        newEvent("a"), // 4
      ]);
      clock.advance(65_000);
      await publishOk(engine, user, newEvent("a")); // 5
      const range = await engine.readAfter(user, 0);
      assert.deepEqual([range.complete, range.events.map((e) => e.seq)], [false, [3, 4, 5]]);
      assert.equal((await engine.readAfter(user, 2)).complete, true);
      await publishOk(engine, user, newEvent("a", "agent_completed")); // 6
      clock.advance(65_000);
      await publishOk(engine, user, newEvent("b")); // 7
      const later = await engine.readAfter(user, 0);
      assert.deepEqual([later.complete, later.events.map((e) => e.seq)], [false, [7]]);
      sub.unsubscribe();
    },
    { count: 1000, seconds: 60 },
  );

  test("publishMany() from two instances at once gives one user gap-free, distinct seqs", async (fixture) => {
    const user = userId();
    const peer = await fixture.peer();
    const recorder = new EventRecorder();
    const sub = await fixture.engine.subscribe(user, recorder.listener);
    const rounds = 40;
    const size = 12;
    const published = (
      await Promise.all(
        Array.from(
          { length: rounds },
          (_, round) =>
            (round % 2 ? peer : fixture.engine).publishMany(
              user,
              Array.from(
                { length: size },
                (_, i) => newEvent(`r${round % 5}`, "agent_delta", { round, i }),
              ),
            ),
        ),
      )
    ).map((results) =>
      results.map((r) => {
        assert.ok(r.published);
        return r.event;
      })
    );
    const total = rounds * size;
    assertSeqRange(published.flat().map((e) => e.seq).sort((a, b) => a - b), 1, total);
    for (const batch of published) {
      // A batch is one atomic step: its seqs are consecutive, in its order.
      assertSeqRange(batch.map((e) => e.seq), batch[0].seq, batch[0].seq + size - 1);
      assert.deepEqual(batch.map((e) => e.data.i), Array.from({ length: size }, (_, i) => i));
    }
    await recorder.waitForSeq(total);
    assertSeqRange(recorder.seqs, 1, total);
    const range = await fixture.engine.readAfter(user, 0);
    assertSeqRange(range.events.map((e) => e.seq), 1, total);
    assert.equal(range.complete, true);
    sub.unsubscribe();
  });

  // ---- subscribe ----------------------------------------------------------------------------

  test("subscribe() delivers every later event of the user, in seq order, with the epoch", async (fixture) => {
    const user = userId();
    const other = userId("other");
    await publishOk(fixture.engine, user, newEvent("r0"));
    const a = new EventRecorder();
    const b = new EventRecorder();
    const subA = await fixture.engine.subscribe(user, a.listener);
    const subB = await fixture.engine.subscribe(user, b.listener);
    const { epoch } = await fixture.engine.catchUp(user);
    const peer = await fixture.peer();
    for (let i = 0; i < 20; i++) {
      await publishOk(i % 2 ? peer : fixture.engine, user, newEvent("r1"));
      await publishOk(fixture.engine, other, newEvent("x"));
    }
    await a.waitForSeq(21);
    await b.waitForSeq(21);
    assertSeqRange(a.seqs, 2, 21);
    assertSeqRange(b.seqs, 2, 21);
    assert.ok(a.received.every((r) => r.epoch === epoch && r.event.runId === "r1"));
    subA.unsubscribe();
    subB.unsubscribe();
  });

  test("subscribe() keeps delivering when a listener throws", async ({ engine }) => {
    const user = userId();
    const good = new EventRecorder();
    const bad = await engine.subscribe(user, () => {
      throw new Error("listener failure (expected by the test)");
    });
    const sub = await engine.subscribe(user, good.listener);
    for (let i = 0; i < 3; i++) await publishOk(engine, user, newEvent("r1"));
    await good.waitForSeq(3);
    assertSeqRange(good.seqs, 1, 3);
    bad.unsubscribe();
    sub.unsubscribe();
  });

  test("subscribe() stops delivering after unsubscribe(), which is idempotent", async ({ engine }) => {
    const user = userId();
    const gone = new EventRecorder();
    const stays = new EventRecorder();
    const subGone = await engine.subscribe(user, gone.listener);
    const subStays = await engine.subscribe(user, stays.listener);
    await publishOk(engine, user, newEvent("r1"));
    await gone.waitForSeq(1);
    subGone.unsubscribe();
    subGone.unsubscribe();
    await publishOk(engine, user, newEvent("r1"));
    await stays.waitForSeq(2);
    assert.deepEqual(gone.seqs, [1]);
    subStays.unsubscribe();
    subStays.unsubscribe();
    // Subscribing again after the last listener left works (a new live subscription).
    const again = new EventRecorder();
    const subAgain = await engine.subscribe(user, again.listener);
    await publishOk(engine, user, newEvent("r1"));
    await again.waitForSeq(3);
    assert.deepEqual(again.seqs, [3]);
    assert.deepEqual(stays.seqs, [1, 2]);
    subAgain.unsubscribe();
  });

  test("subscribe() then catchUp() misses nothing published throughout", async (fixture) => {
    const user = userId();
    const { epoch } = await fixture.engine.catchUp(user);
    const peer = await fixture.peer();
    const total = 300;
    const halfway = Promise.withResolvers<void>();
    const publisher = (async () => {
      for (let i = 1; i <= total; i++) {
        await publishOk(i % 3 ? peer : fixture.engine, user, newEvent("r1"));
        if (i === 50) halfway.resolve();
      }
    })();
    await halfway.promise;
    const recorder = new EventRecorder();
    const sub = await fixture.engine.subscribe(user, recorder.listener);
    const snapshot = await fixture.engine.catchUp(user, { epoch, after: 0 });
    await publisher;
    assert.ok(snapshot.resumed);
    await recorder.waitForSeq(total);
    // What a connection does: the catch-up, then live events after its seq.
    const delivered = [
      ...snapshot.events.map((e) => e.seq),
      ...recorder.seqs.filter((s) => s > snapshot.seq),
    ];
    assertSeqRange(delivered, 1, total);
    // The listener itself saw no gap and no duplicate from its first event on.
    assertSeqRange(recorder.seqs, recorder.seqs[0], total);
    sub.unsubscribe();
  });

  // ---- catchUp ------------------------------------------------------------------------------

  test("catchUp() gives a user with no log a stable fresh epoch and seq 0", async (fixture) => {
    const user = userId();
    const first = await fixture.engine.catchUp(user);
    assert.equal(first.seq, 0);
    assert.equal(first.resumed, false);
    assert.deepEqual(first.events, []);
    assert.deepEqual(first.activeRuns, []);
    assert.ok(first.epoch.length > 0 && first.epoch.length <= 128);
    const peer = await fixture.peer();
    const resumed = await peer.catchUp(user, { epoch: first.epoch, after: 0 });
    assert.equal(resumed.epoch, first.epoch);
    assert.equal(resumed.resumed, true);
    assert.deepEqual(resumed.events, []);
    const elsewhere = await fixture.engine.catchUp(user, { epoch: "some-other-epoch", after: 0 });
    assert.equal(elsewhere.resumed, false);
    assert.equal(elsewhere.epoch, first.epoch);
    const published = await fixture.engine.publish(user, newEvent("r1"));
    assert.ok(published.published);
    assert.equal(published.epoch, first.epoch);
    assert.notEqual(first.epoch, (await fixture.engine.catchUp(userId())).epoch);
  });

  test("catchUp() resumes from a position within retention", async ({ engine }) => {
    const user = userId();
    for (let i = 0; i < 5; i++) await publishOk(engine, user, newEvent("r1"));
    const { epoch } = await engine.catchUp(user);
    const fromTwo = await engine.catchUp(user, { epoch, after: 2 });
    assert.equal(fromTwo.resumed, true);
    assert.equal(fromTwo.seq, 5);
    assert.deepEqual(fromTwo.events.map((e) => e.seq), [3, 4, 5]);
    assert.deepEqual(fromTwo.events[0], { seq: 3, ...newEvent("r1") });
    const atHead = await engine.catchUp(user, { epoch, after: 5 });
    assert.equal(atHead.resumed, true);
    assert.deepEqual(atHead.events, []);
    const fromZero = await engine.catchUp(user, { epoch, after: 0 });
    assert.deepEqual(fromZero.events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    for (const resume of [{ epoch, after: 6 }, { epoch: `${epoch}x`, after: 2 }]) {
      const refused = await engine.catchUp(user, resume);
      assert.equal(refused.resumed, false, JSON.stringify(resume));
      assert.equal(refused.seq, 5);
      assert.deepEqual(refused.events, []); // no active run
    }
  });

  test("catchUp() without a resume returns each active run's events from its start", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("done", "agent_started")); // 1
    await publishOk(engine, user, newEvent("a", "agent_started")); // 2
    await publishOk(engine, user, newEvent("done", "agent_completed")); // 3
    await publishOk(engine, user, newEvent("stray")); // 4
    await publishOk(engine, user, newEvent("b", "agent_started")); // 5
    await publishOk(engine, user, newEvent("a")); // 6
    await publishOk(engine, user, newEvent("b")); // 7
    const snapshot = await engine.catchUp(user);
    assert.equal(snapshot.resumed, false);
    assert.equal(snapshot.seq, 7);
    assert.deepEqual(snapshot.activeRuns.map((r) => [r.runId, r.startSeq]), [["a", 2], ["b", 5]]);
    assert.deepEqual(snapshot.events.map((e) => [e.seq, e.runId]), [
      [2, "a"],
      [5, "b"],
      [6, "a"],
      [7, "b"],
    ]);
  });

  // ---- readAfter and retention --------------------------------------------------------------

  test("readAfter() returns the events after a seq, up to the head", async ({ engine }) => {
    const user = userId();
    for (let i = 0; i < 4; i++) await publishOk(engine, user, newEvent("r1"));
    const { epoch } = await engine.catchUp(user);
    const range = await engine.readAfter(user, 1);
    assert.deepEqual(range.events.map((e) => e.seq), [2, 3, 4]);
    assert.deepEqual(range.events[2], { seq: 4, ...newEvent("r1") });
    assert.equal(range.complete, true);
    assert.equal(range.epoch, epoch);
    assert.deepEqual(await engine.readAfter(user, 4), {
      epoch,
      seq: 4,
      events: [],
      complete: true,
    });
    assert.deepEqual(await engine.readAfter(user, 9), {
      epoch,
      seq: 4,
      events: [],
      complete: true,
    });
  });

  test(
    "readAfter() reports a range whose start was evicted by count as incomplete",
    async ({ engine }) => {
      const user = userId();
      await publishOk(engine, user, newEvent("r1", "agent_started"));
      for (let i = 0; i < 10; i++) await publishOk(engine, user, newEvent("r1"));
      await publishOk(engine, user, newEvent("r1", "agent_completed")); // 12: nothing in flight
      const range = await engine.readAfter(user, 0);
      assert.equal(range.complete, false);
      assert.deepEqual(range.events.map((e) => e.seq), [8, 9, 10, 11, 12]);
      assert.equal((await engine.readAfter(user, 7)).complete, true);
      assert.equal((await engine.readAfter(user, 6)).complete, false);
      const { epoch } = await engine.catchUp(user);
      const refused = await engine.catchUp(user, { epoch, after: 6 });
      assert.equal(refused.resumed, false);
      assert.deepEqual(refused.events, []); // no active run
      const resumed = await engine.catchUp(user, { epoch, after: 7 });
      assert.equal(resumed.resumed, true);
      assert.deepEqual(resumed.events.map((e) => e.seq), [8, 9, 10, 11, 12]);
    },
    { count: 5, seconds: 3600 },
  );

  test("readAfter() drops events older than the retention age", async ({ engine, clock }) => {
    const user = userId();
    const sub = await engine.subscribe(user, () => {}); // keeps a memory log from being swept
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    await publishOk(engine, user, newEvent("r1", "agent_completed"));
    clock.advance(30_000);
    await publishOk(engine, user, newEvent("r2"));
    clock.advance(35_000); // the first two are 65 s old, the third 35 s
    const range = await engine.readAfter(user, 0);
    assert.equal(range.complete, false);
    assert.deepEqual(range.events.map((e) => e.seq), [3]);
    const snapshot = await engine.catchUp(user);
    assert.equal(snapshot.seq, 3);
    assert.deepEqual(snapshot.events, []);
    assert.equal((await publishOk(engine, user, newEvent("r2"))).seq, 4);
    sub.unsubscribe();
  }, { count: 1000, seconds: 60 });

  // ---- retention never drops an event of a run in flight ------------------------------------

  test(
    "publish() evicts by count only events older than the oldest active run's agent_started",
    async ({ engine }) => {
      const user = userId();
      await publishOk(engine, user, newEvent("stray")); // 1
      await publishOk(engine, user, newEvent("a", "agent_started")); // 2
      for (let i = 0; i < 5; i++) await publishOk(engine, user, newEvent("a")); // 3..7
      await publishOk(engine, user, newEvent("b", "agent_started")); // 8
      for (let i = 0; i < 3; i++) await publishOk(engine, user, newEvent("b")); // 9..11
      let range = await engine.readAfter(user, 0);
      assert.equal(range.complete, false, "the event before every run went");
      assertSeqRange(range.events.map((e) => e.seq), 2, 11);
      const snapshot = await engine.catchUp(user);
      assertSeqRange(snapshot.events.map((e) => e.seq), 2, 11);
      assert.equal(snapshot.events[0].name, "agent_started");

      await publishOk(engine, user, newEvent("a", "agent_completed")); // 12: b holds from 8
      range = await engine.readAfter(user, 0);
      assertSeqRange(range.events.map((e) => e.seq), 8, 12);
      assert.equal((await engine.readAfter(user, 7)).complete, true);

      await publishOk(engine, user, newEvent("b", "agent_completed")); // 13: nothing in flight
      range = await engine.readAfter(user, 0);
      assertSeqRange(range.events.map((e) => e.seq), 11, 13);
    },
    { count: 3, seconds: 3600 },
  );

  test(
    "catchUp() rebuilds a run in flight from agent_started after many times the retention age and count",
    async (fixture) => {
      const { engine, clock } = fixture;
      const user = userId();
      const sub = await engine.subscribe(user, () => {});
      await publishOk(engine, user, newEvent("done", "agent_started")); // 1
      await publishOk(engine, user, newEvent("done", "agent_completed")); // 2
      await publishOk(engine, user, newEvent("long", "agent_started")); // 3
      for (let i = 0; i < 40; i++) {
        clock.advance(20_000); // 800 s in all, the retention age is 60 s
        await publishOk(engine, user, newEvent("long", "agent_delta", { text: `${i}` }));
      }
      const { epoch } = await engine.catchUp(user);
      for (const reader of [engine, await fixture.peer()]) {
        const snapshot = await reader.catchUp(user);
        assert.deepEqual(snapshot.activeRuns.map((r) => [r.runId, r.startSeq]), [["long", 3]]);
        assertSeqRange(snapshot.events.map((e) => e.seq), 3, 43);
        assert.equal(snapshot.events[0].name, "agent_started");
        const texts = snapshot.events.slice(1).map((e) => e.data.text);
        assert.deepEqual(texts, Array.from({ length: 40 }, (_, i) => `${i}`));
        const resumed = await reader.catchUp(user, { epoch, after: 2 });
        assert.equal(resumed.resumed, true);
        assert.equal((await reader.readAfter(user, 2)).complete, true);
        assert.equal((await reader.catchUp(user, { epoch, after: 1 })).resumed, false);
      }
      clock.advance(61_000);
      await publishOk(engine, user, newEvent("long", "agent_completed")); // 44
      assert.deepEqual((await engine.readAfter(user, 0)).events.map((e) => e.seq), [44]);
      sub.unsubscribe();
    },
    { count: 5, seconds: 60 },
  );

  // ---- purgeThread --------------------------------------------------------------------------

  test("purgeThread() leaves the thread's events out of every read, on every instance", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    await publishOk(engine, user, newEvent("a", "agent_started")); // 1, thread-a
    await publishOk(engine, user, newEvent("b", "agent_started")); // 2, thread-b
    await publishOk(engine, user, newEvent("a")); // 3
    await publishOk(engine, user, newEvent("b")); // 4
    await publishOk(engine, user, newEvent("a")); // 5
    const { epoch } = await engine.catchUp(user);
    await engine.purgeThread(user, "thread-a");
    for (const reader of [engine, await fixture.peer()]) {
      const range = await reader.readAfter(user, 0);
      assert.deepEqual(range, {
        epoch,
        seq: 5,
        complete: true,
        events: [{ seq: 2, ...newEvent("b", "agent_started") }, { seq: 4, ...newEvent("b") }],
      });
      assert.deepEqual(await reader.readAfter(user, 4), {
        epoch,
        seq: 5,
        events: [],
        complete: true,
      });
      const fresh = await reader.catchUp(user);
      assert.deepEqual(fresh.activeRuns, [{ runId: "b", threadId: "thread-b", startSeq: 2 }]);
      assert.deepEqual(fresh.events.map((e) => e.seq), [2, 4]);
      const resumed = await reader.catchUp(user, { epoch, after: 0 });
      assert.equal(resumed.resumed, true);
      assert.deepEqual(resumed.events.map((e) => e.seq), [2, 4]);
      const fromThree = await reader.catchUp(user, { epoch, after: 3 });
      assert.deepEqual([fromThree.resumed, fromThree.seq], [true, 5]);
      assert.deepEqual(fromThree.events.map((e) => e.seq), [4]);
    }
  });

  test("purgeThread() refuses the thread's later events and keeps the seqs of the others", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    const recorder = new EventRecorder();
    const sub = await engine.subscribe(user, recorder.listener);
    await publishOk(engine, user, newEvent("a", "agent_started")); // 1
    await publishOk(engine, user, newEvent("b", "agent_started")); // 2
    await engine.purgeThread(user, "thread-a");
    const peer = await fixture.peer();
    for (const name of ["agent_delta", "agent_completed", "agent_started"]) {
      assert.deepEqual(await peer.publish(user, newEvent("a", name)), {
        published: false,
        reason: "thread_purged",
      });
    }
    assert.deepEqual(
      await engine.publish(user, { ...newEvent("c", "agent_started"), threadId: "thread-a" }),
      { published: false, reason: "thread_purged" },
      "a new run on the purged thread",
    );
    assert.equal((await publishOk(peer, user, newEvent("b"))).seq, 3);
    await engine.purgeThread(user, "thread-a"); // again: nothing changes
    await engine.purgeThread(user, "thread-never-used");
    assert.equal((await publishOk(engine, user, newEvent("b", "agent_completed"))).seq, 4);
    await recorder.waitForSeq(4);
    assert.deepEqual(recorder.seqs, [1, 2, 3, 4]);
    assert.deepEqual((await engine.catchUp(user)).activeRuns, []);
    assert.deepEqual(
      (await engine.readAfter(user, 0)).events.map((e) => e.seq),
      [2, 3, 4],
    );
    sub.unsubscribe();
  });

  test("purgeThread() touches only the user it names", async ({ engine }) => {
    const alice = userId("alice");
    const bob = userId("bob");
    await publishOk(engine, alice, newEvent("a", "agent_started"));
    await publishOk(engine, bob, newEvent("a", "agent_started"));
    await engine.purgeThread(alice, "thread-a");
    assert.deepEqual((await engine.readAfter(alice, 0)).events, []);
    assert.deepEqual((await engine.readAfter(bob, 0)).events.map((e) => e.seq), [1]);
    assert.equal((await publishOk(engine, bob, newEvent("a"))).seq, 2);
  });

  test(
    "purgeThread() is forgotten once the thread's events aged out and the retention age passed",
    async ({ engine, clock }) => {
      const user = userId();
      const sub = await engine.subscribe(user, () => {});
      await publishOk(engine, user, newEvent("a", "agent_started")); // 1
      await publishOk(engine, user, newEvent("a")); // 2
      await engine.purgeThread(user, "thread-a");
      clock.advance(61_000);
      await publishOk(engine, user, newEvent("b", "agent_started")); // 3: drops 1 and 2
      const range = await engine.readAfter(user, 0);
      assert.deepEqual([range.complete, range.events.map((e) => e.seq)], [false, [3]]);
      // The purge is forgotten: a thread id is never reused, but the log stays small.
      assert.equal((await publishOk(engine, user, newEvent("a"))).seq, 4);
      sub.unsubscribe();
    },
    { count: 1000, seconds: 60 },
  );

  test(
    "purgeThread() is remembered while a run in flight holds the thread's events",
    async ({ engine, clock }) => {
      const user = userId();
      const sub = await engine.subscribe(user, () => {});
      await publishOk(engine, user, newEvent("b", "agent_started")); // 1: holds 1 and later
      await publishOk(engine, user, newEvent("a", "agent_started")); // 2
      await engine.purgeThread(user, "thread-a");
      clock.advance(61_000);
      await publishOk(engine, user, newEvent("b")); // 3
      const range = await engine.readAfter(user, 0);
      assert.deepEqual([range.complete, range.events.map((e) => e.seq)], [true, [1, 3]]);
      assert.deepEqual(await engine.publish(user, newEvent("a")), {
        published: false,
        reason: "thread_purged",
      });
      sub.unsubscribe();
    },
    { count: 1000, seconds: 60 },
  );

  // ---- approvals ----------------------------------------------------------------------------

  test("now() gives the engine's clock, the same on every instance", async (fixture) => {
    const { engine, clock } = fixture;
    const first = await engine.now();
    assert.ok(Number.isSafeInteger(first));
    clock.advance(1_000);
    const second = await (await fixture.peer()).now();
    assert.ok(second >= first, `${second} after ${first}`);
    assert.ok(second - first < 60_000);
  });

  test("requestApproval() publishes the request with expiresAt from the engine's clock and records it", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    const recorder = new EventRecorder();
    const sub = await engine.subscribe(user, recorder.listener);
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    // Input the log must carry unchanged: nesting, an empty object and array, unicode, a
    // quote, a large integer and a float.
    const input = {
      path: '/tmp/"x"',
      opts: { deep: [1, { e: {} }, []] },
      n: 2 ** 53 - 1,
      f: 0.1,
      s: "ü😀",
    };
    const before = await engine.now();
    const result = await engine.requestApproval(user, approvalRequest("r1", "tc1", { input }), {
      timeoutMs: 60_000,
    });
    const after = await engine.now();
    assert.ok(result.published);
    const { expiresAt } = result.event.data as { expiresAt: string };
    assert.equal(new Date(Date.parse(expiresAt)).toISOString(), expiresAt, "ISO 8601 UTC");
    assert.ok(Date.parse(expiresAt) >= before + 60_000 && Date.parse(expiresAt) <= after + 60_000);
    const expected: UserEvent = {
      seq: 2,
      threadId: "thread-r1",
      runId: "r1",
      name: "tool_approval_requested",
      data: { toolCallId: "tc1", tool: "write_file", input, expiresAt },
      ts: "2026-01-01T00:00:01.000Z",
    };
    assert.deepEqual(result.event, expected);
    assert.deepEqual((await (await fixture.peer()).readAfter(user, 1)).events, [expected]);
    await recorder.waitForSeq(2);
    assert.deepEqual(recorder.received[1].event, expected);
    const record = {
      runId: "r1",
      threadId: "thread-r1",
      toolCallId: "tc1",
      tool: "write_file",
      expiresAt,
      requestSeq: 2,
    };
    assert.deepEqual(await engine.approvalState(user, { runId: "r1", toolCallId: "tc1" }), record);
    assert.deepEqual(await engine.pendingApprovals(user, "r1"), [record]);
    assert.equal(await engine.approvalState(user, { runId: "r2", toolCallId: "tc1" }), undefined);
    assert.equal(
      await engine.approvalState(userId(), { runId: "r1", toolCallId: "tc1" }),
      undefined,
    );
    sub.unsubscribe();
  });

  test("requestApproval() publishes nothing for a repeated tool call, an ended run or a purged thread", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    const first = await engine.requestApproval(user, approvalRequest("r1", "tc1"), {
      timeoutMs: 1_000,
    });
    assert.ok(first.published);
    const peer = await fixture.peer();
    assert.deepEqual(
      await peer.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 1_000 }),
      { published: false, reason: "already_requested" },
    );
    const end = await publishOk(engine, user, newEvent("r1", "agent_completed"));
    assert.deepEqual(
      await engine.requestApproval(user, approvalRequest("r1", "tc2"), { timeoutMs: 1_000 }),
      { published: false, reason: "run_ended", endSeq: end.seq },
    );
    await publishOk(engine, user, newEvent("r2", "agent_started"));
    await engine.purgeThread(user, "thread-r2");
    assert.deepEqual(
      await engine.requestApproval(user, approvalRequest("r2", "tc3"), { timeoutMs: 1_000 }),
      { published: false, reason: "thread_purged" },
    );
    assert.equal((await engine.catchUp(user)).seq, 4);
    for (const timeoutMs of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(
        engine.requestApproval(user, approvalRequest("r1", "tc4"), { timeoutMs }),
        RangeError,
      );
    }
  });

  test("resolveApproval() lets the first decision win, publishes it once and reports the winner after", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    await engine.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 60_000 });
    const recorder = new EventRecorder();
    const sub = await engine.subscribe(user, recorder.listener);
    const peer = await fixture.peer();
    const denied = decision("r1", "tc1", { approved: false, reason: "not that file" });
    const won = await peer.resolveApproval(user, denied);
    const expected: UserEvent = {
      seq: 3,
      threadId: "thread-r1",
      runId: "r1",
      name: "tool_approval_resolved",
      data: {
        toolCallId: "tc1",
        tool: "write_file",
        approved: false,
        by: "user",
        reason: "not that file",
      },
      ts: "2026-01-01T00:00:02.000Z",
    };
    assert.equal(won.outcome, "resolved");
    assert.deepEqual(won.outcome === "resolved" && won.event, expected);
    await recorder.waitForSeq(3);
    assert.deepEqual(recorder.received.map((r) => r.event), [expected]);
    const already: ResolveApprovalResult = {
      outcome: "already",
      approved: false,
      by: "user",
      reason: "not that file",
    };
    for (
      const late of [
        denied, // a repeat of the winning answer: the caller answers no error
        decision("r1", "tc1"), // a different one: already_resolved
        decision("r1", "tc1", { approved: false, by: "cancelled" }),
      ]
    ) {
      assert.deepEqual(await engine.resolveApproval(user, late), already);
    }
    const record = await engine.approvalState(user, { runId: "r1", toolCallId: "tc1" });
    assert.deepEqual(record?.decision, {
      approved: false,
      by: "user",
      reason: "not that file",
      seq: 3,
    });
    assert.deepEqual(await engine.pendingApprovals(user, "r1"), []);
    assert.equal((await engine.catchUp(user)).seq, 3, "nothing else was published");
    sub.unsubscribe();
  });

  test("resolveApproval() answers not_found for an unknown, foreign or purged request", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    await engine.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 60_000 });
    const notFound = { outcome: "not_found" };
    assert.deepEqual(await engine.resolveApproval(user, decision("r1", "tc2")), notFound);
    assert.deepEqual(await engine.resolveApproval(user, decision("r2", "tc1")), notFound);
    assert.deepEqual(await engine.resolveApproval(userId(), decision("r1", "tc1")), notFound);
    await engine.purgeThread(user, "thread-r1");
    assert.deepEqual(await engine.resolveApproval(user, decision("r1", "tc1")), notFound);
    assert.equal(await engine.approvalState(user, { runId: "r1", toolCallId: "tc1" }), undefined);
    assert.deepEqual(await engine.pendingApprovals(user, "r1"), []);
    assert.equal((await engine.catchUp(user)).seq, 2);
  });

  test("resolveApproval() rejects approved:true from anyone but a user", async ({ engine }) => {
    const user = userId();
    await engine.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 60_000 });
    for (const by of ["timeout", "cancelled", "shutdown", "interrupted"] as const) {
      await assert.rejects(engine.resolveApproval(user, decision("r1", "tc1", { by })), TypeError);
    }
    assert.equal(
      (await engine.approvalState(user, { runId: "r1", toolCallId: "tc1" }))?.decision,
      undefined,
    );
  });

  test("resolveApproval() accepts a timeout only once the engine's clock reached expiresAt", async (fixture) => {
    const { engine, clock } = fixture;
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    const long = await engine.requestApproval(user, approvalRequest("r1", "tc1"), {
      timeoutMs: 3_600_000,
    });
    assert.ok(long.published);
    const { expiresAt } = long.event.data as { expiresAt: string };
    const timeout = decision("r1", "tc1", { approved: false, by: "timeout" });
    assert.deepEqual(await (await fixture.peer()).resolveApproval(user, timeout), {
      outcome: "not_expired",
      expiresAt,
    });
    assert.equal((await engine.catchUp(user)).seq, 2);

    const short = await engine.requestApproval(user, approvalRequest("r1", "tc2"), {
      timeoutMs: 1,
    });
    assert.ok(short.published);
    await untilEngineTime({ engine, clock }, (short.event.data as { expiresAt: string }).expiresAt);
    const timedOut = await engine.resolveApproval(user, { ...timeout, toolCallId: "tc2" });
    assert.equal(timedOut.outcome, "resolved");
    assert.deepEqual(timedOut.outcome === "resolved" && timedOut.event.data, {
      toolCallId: "tc2",
      tool: "write_file",
      approved: false,
      by: "timeout",
    });
    // A user's answer after expiresAt still wins while no timeout was recorded.
    const late = await engine.requestApproval(user, approvalRequest("r1", "tc3"), {
      timeoutMs: 1,
    });
    assert.ok(late.published);
    await untilEngineTime({ engine, clock }, (late.event.data as { expiresAt: string }).expiresAt);
    assert.equal((await engine.resolveApproval(user, decision("r1", "tc3"))).outcome, "resolved");
  });

  test("pendingApprovals() lists a run's undecided requests, oldest first, so its end can resolve them", async (fixture) => {
    const { engine } = fixture;
    const user = userId();
    await publishOk(engine, user, newEvent("a", "agent_started")); // 1
    await publishOk(engine, user, newEvent("b", "agent_started")); // 2
    for (const toolCallId of ["tc3", "tc1", "tc2"]) {
      await engine.requestApproval(user, approvalRequest("a", toolCallId), { timeoutMs: 60_000 });
    } // 3, 4, 5
    await engine.requestApproval(user, approvalRequest("b", "tc9"), { timeoutMs: 60_000 }); // 6
    await engine.resolveApproval(user, decision("a", "tc1")); // 7
    const peer = await fixture.peer();
    const pending = await peer.pendingApprovals(user, "a");
    assert.deepEqual(pending.map((r) => [r.toolCallId, r.requestSeq]), [["tc3", 3], ["tc2", 5]]);
    for (const record of pending) {
      const cancelled = decision("a", record.toolCallId, { approved: false, by: "cancelled" });
      assert.equal((await peer.resolveApproval(user, cancelled)).outcome, "resolved");
    }
    await publishOk(peer, user, newEvent("a", "agent_cancelled")); // 10
    assert.deepEqual(await engine.pendingApprovals(user, "a"), []);
    assert.deepEqual(await engine.resolveApproval(user, decision("a", "tc1")), {
      outcome: "run_ended",
    });
    assert.deepEqual((await engine.pendingApprovals(user, "b")).map((r) => r.toolCallId), ["tc9"]);
    const names = (await engine.readAfter(user, 6)).events.map((e) => [e.name, e.data.toolCallId]);
    assert.deepEqual(names, [
      ["tool_approval_resolved", "tc1"],
      ["tool_approval_resolved", "tc3"],
      ["tool_approval_resolved", "tc2"],
      ["agent_cancelled", undefined],
    ]);
  });

  test("resolveApproval() answers run_ended for a request left pending when the run ended", async ({ engine }) => {
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    await engine.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 60_000 });
    await publishOk(engine, user, newEvent("r1", "agent_failed"));
    for (const by of ["user", "interrupted"] as const) {
      const late = decision("r1", "tc1", { approved: false, by });
      assert.deepEqual(await engine.resolveApproval(user, late), { outcome: "run_ended" });
    }
    assert.equal((await engine.catchUp(user)).seq, 3);
  });

  test("resolveApproval() gives exactly one winner among decisions racing from two instances", async (fixture) => {
    const { engine } = fixture;
    const peer = await fixture.peer();
    const user = userId();
    await publishOk(engine, user, newEvent("r1", "agent_started"));
    for (let round = 0; round < 25; round++) {
      const toolCallId = `tc${round}`;
      await engine.requestApproval(user, approvalRequest("r1", toolCallId), { timeoutMs: 60_000 });
      const racing = [
        engine.resolveApproval(user, decision("r1", toolCallId)),
        peer.resolveApproval(user, decision("r1", toolCallId, { approved: false })),
        peer.resolveApproval(
          user,
          decision("r1", toolCallId, { approved: false, by: "cancelled" }),
        ),
      ];
      const results = await Promise.all(racing);
      const winners = results.filter((r) => r.outcome === "resolved");
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
      const data = winners[0].outcome === "resolved" ? winners[0].event.data : {};
      for (const lost of results.filter((r) => r.outcome !== "resolved")) {
        assert.deepEqual(lost, { outcome: "already", approved: data.approved, by: data.by });
      }
    }
    const resolved = (await engine.readAfter(user, 0)).events.filter((e) =>
      e.name === "tool_approval_resolved"
    );
    assert.deepEqual(
      resolved.map((e) => e.data.toolCallId),
      Array.from({ length: 25 }, (_, i) => `tc${i}`),
    );
  });

  // ---- connections --------------------------------------------------------------------------

  test("acquireConnection() caps a user's connections across instances", async (fixture) => {
    const user = userId();
    const peer = await fixture.peer();
    assert.equal(await fixture.engine.acquireConnection(user, "c1", 3), true);
    assert.equal(await peer.acquireConnection(user, "c2", 3), true);
    assert.equal(await fixture.engine.acquireConnection(user, "c1", 3), true); // same one again
    assert.equal(await peer.acquireConnection(user, "c3", 3), true);
    assert.equal(await fixture.engine.acquireConnection(user, "c4", 3), false);
    assert.equal(await peer.acquireConnection(user, "c4", 3), false);
    assert.equal(await fixture.engine.acquireConnection(userId("other"), "c4", 3), true);
    await peer.releaseConnection(user, "c2");
    assert.equal(await fixture.engine.acquireConnection(user, "c4", 3), true);
    assert.equal(await fixture.engine.acquireConnection(user, "c5", 3), false);
  });

  test("releaseConnection() is idempotent", async ({ engine }) => {
    const user = userId();
    assert.equal(await engine.acquireConnection(user, "c1", 1), true);
    await engine.releaseConnection(user, "c1");
    await engine.releaseConnection(user, "c1");
    await engine.releaseConnection(user, "never-acquired");
    assert.equal(await engine.acquireConnection(user, "c2", 1), true);
    assert.equal(await engine.acquireConnection(user, "c3", 1), false);
  });

  // ---- control, ping, close -----------------------------------------------------------------

  test("sendControl() reaches every instance's handlers, its own included", async (fixture) => {
    const peer = await fixture.peer();
    const seen: string[] = [];
    const done = Promise.withResolvers<void>();
    const expected = peer === fixture.engine ? 2 : 4;
    const record = (who: string) => (message: { runId: string }) => {
      seen.push(`${who}:${message.runId}`);
      if (seen.length === expected) done.resolve();
    };
    const offA = fixture.engine.onControl(record("a"));
    const offB = peer === fixture.engine ? () => {} : peer.onControl(record("b"));
    const offThrows = fixture.engine.onControl(() => {
      throw new Error("control handler failure (expected by the test)");
    });
    await fixture.engine.sendControl({ type: "cancel", userId: "u", runId: "r1" });
    await peer.sendControl({ type: "cancel", userId: "u", runId: "r2" });
    const timer = setTimeout(() => done.reject(new Error(`control: got ${seen}`)), 10_000);
    await done.promise.finally(() => clearTimeout(timer));
    const expectedSeen = peer === fixture.engine
      ? ["a:r1", "a:r2"]
      : ["a:r1", "a:r2", "b:r1", "b:r2"];
    assert.deepEqual(seen.sort(), expectedSeen);
    offA();
    offB();
    offThrows();
  });

  test("ping() resolves while open and close() makes later calls reject", async ({ engine }) => {
    await engine.ping();
    await engine.close();
    await engine.close(); // idempotent
    await assert.rejects(engine.ping());
    await assert.rejects(engine.publish(userId(), newEvent("r1")), DependencyUnavailableError);
  });
}
