import assert from "node:assert/strict";
import { LiveFeed } from "../../../src/bus/_live_feed.ts";
import type { FeedRange } from "../../../src/bus/_live_feed.ts";
import type { UserEvent } from "../../../src/bus/event_engine.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { EventRecorder, newEvent } from "../../_helpers/engine_conformance.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

function event(seq: number): UserEvent {
  return { seq, ...newEvent("r1") };
}

/** The log a feed backfills from: controllable epoch, contents, failures and timing. */
class FakeLog {
  epoch = "e1";
  events: UserEvent[] = [];
  failures = 0;
  /** The head a read reports, when above the last event (the events after it were purged). */
  head?: number;
  gate?: PromiseWithResolvers<void>;
  readonly calls: number[] = [];

  constructor(upTo = 0, from = 1) {
    for (let seq = from; seq <= upTo; seq++) this.events.push(event(seq));
  }

  readAfter = async (after: number): Promise<FeedRange> => {
    this.calls.push(after);
    await this.gate?.promise;
    if (this.failures > 0) {
      this.failures--;
      throw new Error("Redis is down (expected by the test)");
    }
    return {
      epoch: this.epoch,
      seq: Math.max(this.head ?? 0, this.events.at(-1)?.seq ?? 0),
      events: this.events.filter((e) => e.seq > after),
    };
  };
}

function setUp(log: FakeLog, options: { maxQueued?: number } = {}) {
  const clock = new ManualClock();
  const feed = new LiveFeed({
    userId: "alice",
    readAfter: log.readAfter,
    clock,
    log: silentLogger,
    ...options,
  });
  const recorder = new EventRecorder();
  feed.add(recorder.listener);
  const send = (seq: number, epoch = "e1") => feed.receive({ epoch, event: event(seq) });
  return { clock, feed, recorder, send };
}

Deno.test("LiveFeed.receive() delivers in seq order and drops duplicates", () => {
  const log = new FakeLog();
  const { feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  for (const seq of [1, 2, 2, 1, 3]) send(seq);
  assert.deepEqual(recorder.seqs, [1, 2, 3]);
  assert.deepEqual(log.calls, []);
  assert.ok(recorder.received.every((r) => r.epoch === "e1"));
});

Deno.test("LiveFeed.receive() goes on from a backfill's head when the events before it were purged", async () => {
  const log = new FakeLog(5);
  log.events.splice(1, 1); // seq 2 was purged
  log.head = 7; // and so were 6 and 7
  const { feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(1);
  send(4); // reveals a gap: the read returns 3, 4, 5 up to head 7
  await recorder.waitForSeq(5);
  send(8); // the next event after the head: no gap, no second read
  await recorder.waitForSeq(8);
  assert.deepEqual(recorder.seqs, [1, 3, 4, 5, 8]);
  assert.deepEqual(log.calls, [1]);
});

Deno.test("LiveFeed.start() drops queued messages up to the head it starts from", () => {
  const { feed, recorder, send } = setUp(new FakeLog());
  for (const seq of [3, 4, 5]) send(seq);
  assert.deepEqual(recorder.seqs, []);
  feed.start({ epoch: "e1", seq: 4 });
  assert.deepEqual(recorder.seqs, [5]);
});

Deno.test("LiveFeed.receive() backfills a gap before delivering the newer message", async () => {
  const log = new FakeLog(5);
  const { feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(1);
  send(4);
  await recorder.waitForSeq(4);
  send(5);
  await recorder.waitForSeq(5);
  assert.deepEqual(recorder.seqs, [1, 2, 3, 4, 5]);
  assert.deepEqual(log.calls, [1]);
});

Deno.test("LiveFeed.resync() reads back what was lost before delivering anything newer", async () => {
  const log = new FakeLog(4);
  const { feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(1);
  log.gate = Promise.withResolvers();
  feed.resync();
  send(5); // arrives on the new subscription while the read is in flight
  assert.deepEqual(recorder.seqs, [1]);
  log.gate.resolve();
  await recorder.waitForSeq(5);
  assert.deepEqual(recorder.seqs, [1, 2, 3, 4, 5]);
});

Deno.test("LiveFeed.receive() retries a failed backfill on the clock", async () => {
  const log = new FakeLog(3);
  log.failures = 2;
  const { clock, feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(3);
  await Promise.resolve(); // let the failed read settle
  await waitUntil(() => clock.pending === 1, "the first retry to be armed");
  assert.deepEqual(recorder.seqs, []);
  clock.advance(100);
  await waitUntil(() => log.calls.length === 2 && clock.pending === 1, "the second retry");
  clock.advance(200);
  await recorder.waitForSeq(3);
  assert.deepEqual(recorder.seqs, [1, 2, 3]);
  assert.deepEqual(log.calls, [0, 0, 0]);
});

Deno.test("LiveFeed.receive() follows a new epoch and drops messages of the old one", () => {
  const { feed, recorder, send } = setUp(new FakeLog());
  feed.start({ epoch: "e1", seq: 5 });
  send(6, "e1");
  send(1, "e2");
  send(7, "e1"); // a straggler of the reset log
  send(2, "e2");
  assert.deepEqual(recorder.received.map((r) => [r.event.seq, r.epoch]), [
    [6, "e1"],
    [1, "e2"],
    [2, "e2"],
  ]);
  assert.deepEqual(feed.position, { epoch: "e2", seq: 2 });
});

Deno.test("LiveFeed.resync() reads a reset log from its start", async () => {
  const log = new FakeLog(3);
  log.epoch = "e2";
  const { feed, recorder } = setUp(log);
  feed.start({ epoch: "e1", seq: 5 });
  feed.resync();
  await recorder.waitForSeq(3);
  assert.deepEqual(recorder.received.map((r) => [r.event.seq, r.epoch]), [
    [1, "e2"],
    [2, "e2"],
    [3, "e2"],
  ]);
  assert.deepEqual(log.calls, [5, 0]);
});

Deno.test("LiveFeed.receive() delivers what is left when a gap can no longer be filled", async () => {
  const log = new FakeLog(8, 5); // 2 to 4 were evicted
  const { feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(1);
  send(6);
  await recorder.waitForSeq(8);
  send(7);
  send(9);
  await recorder.waitForSeq(9);
  assert.deepEqual(recorder.seqs, [1, 5, 6, 7, 8, 9]);
  assert.deepEqual(log.calls, [1]);
});

Deno.test("LiveFeed.receive() drops its queue when too far behind and reads it back", async () => {
  const log = new FakeLog(10);
  const { feed, recorder, send } = setUp(log, { maxQueued: 3 });
  feed.start({ epoch: "e1", seq: 0 });
  send(1);
  log.gate = Promise.withResolvers();
  send(3); // a gap: the backfill waits at the gate
  for (const seq of [4, 5, 6, 7, 8]) send(seq); // overflows the queue of 3
  log.gate.resolve();
  await recorder.waitForSeq(10);
  await waitUntil(() => log.calls.length === 2, "the read-back");
  assert.deepEqual(recorder.seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(log.calls, [1, 10]);
});

Deno.test("LiveFeed.close() cancels a pending retry and stops delivery", async () => {
  const log = new FakeLog(3);
  log.failures = 1;
  const { clock, feed, recorder, send } = setUp(log);
  feed.start({ epoch: "e1", seq: 0 });
  send(2);
  await waitUntil(() => clock.pending === 1, "the retry to be armed");
  feed.close();
  assert.equal(clock.pending, 0);
  send(1);
  assert.deepEqual(recorder.seqs, []);
  assert.equal(feed.listenerCount, 0);
});

/** Waits (microtasks only, bounded) until `predicate` holds: the fakes settle without timers. */
async function waitUntil(predicate: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (predicate()) return;
    await Promise.resolve();
  }
  throw new Error(`Never reached: ${what}`);
}

Deno.test("LiveFeed.whenDelivered() resolves once the seq was delivered, the epoch changed or the feed closed", async () => {
  const { feed } = setUp(new FakeLog());
  feed.start({ epoch: "e1", seq: 0 });
  const order: string[] = [];
  const upTo2 = feed.whenDelivered("e1", 2).then(() => order.push("2"));
  const upTo9 = feed.whenDelivered("e1", 9).then(() => order.push("9"));
  const closed = feed.whenDelivered("e1", 50).then(() => order.push("closed"));
  await feed.whenDelivered("e1", 0); // already delivered: at once
  await feed.whenDelivered("other", 5); // another epoch: nothing to wait for
  feed.receive({ epoch: "e1", event: event(1) });
  await Promise.resolve();
  assert.deepEqual(order, []);
  feed.receive({ epoch: "e1", event: event(2) });
  await upTo2;
  assert.deepEqual(order, ["2"]);
  feed.receive({ epoch: "e2", event: event(1) }); // a new epoch ends the wait for e1's seq 9
  await upTo9;
  feed.close();
  await closed;
  assert.deepEqual(order, ["2", "9", "closed"]);
});
