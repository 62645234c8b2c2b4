import assert from "node:assert/strict";
import { MemoryEngine } from "../../../src/bus/memory_engine.ts";
import type { UserEvent } from "../../../src/bus/event_engine.ts";
import {
  approvalRequest,
  decision,
  engineConformance,
  EventRecorder,
  newEvent,
  publishOk,
} from "../../_helpers/engine_conformance.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

engineConformance({
  name: "MemoryEngine",
  create({ retention }) {
    const clock = new ManualClock();
    const engine = new MemoryEngine({ clock, retention });
    return Promise.resolve({
      engine,
      clock,
      peer: () => Promise.resolve(engine),
      dispose: () => engine.close(),
    });
  },
});

const RETENTION = { count: 100, seconds: 60 };

Deno.test("MemoryEngine.sweep() drops an idle user whole, so it starts a new epoch at seq 1", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION, sweepIntervalMs: 10_000 });
  const first = await publishOk(engine, "alice", newEvent("r1", "agent_started"));
  await publishOk(engine, "alice", newEvent("r1", "agent_completed"));
  const { epoch } = await engine.catchUp("alice");
  clock.advance(60_000); // the newest event is exactly 60 s old: still retained
  assert.equal(engine.userCount, 1);
  clock.advance(10_000); // the next sweep finds it older than the retention age
  assert.equal(engine.userCount, 0);
  const again = await engine.publish("alice", newEvent("r1", "agent_started"));
  assert.ok(again.published);
  assert.equal(again.event.seq, first.seq);
  assert.notEqual(again.epoch, epoch);
  assert.equal((await engine.catchUp("alice", { epoch, after: 2 })).resumed, false);
  await engine.close();
});

Deno.test("MemoryEngine.sweep() keeps a user with a subscriber or an active run", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION, sweepIntervalMs: 10_000 });
  const sub = await engine.subscribe("subscribed", () => {});
  await publishOk(engine, "subscribed", newEvent("r1"));
  await publishOk(engine, "running", newEvent("r2", "agent_started"));
  await engine.catchUp("reader"); // a log created by a read alone
  clock.advance(120_000);
  assert.equal(engine.userCount, 2);
  const running = await engine.catchUp("running");
  assert.equal(running.seq, 1);
  assert.deepEqual(running.events.map((e) => e.seq), [1]); // kept: its run is in flight
  assert.deepEqual(running.activeRuns.map((r) => r.runId), ["r2"]);
  sub.unsubscribe();
  clock.advance(10_000);
  assert.equal(engine.userCount, 1);
  await engine.close();
});

Deno.test("MemoryEngine.publish() forgets an ended run after the retention age", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION });
  const sub = await engine.subscribe("alice", () => {});
  await publishOk(engine, "alice", newEvent("r1", "agent_started"));
  await publishOk(engine, "alice", newEvent("r1", "agent_completed"));
  clock.advance(60_000);
  assert.equal((await engine.publish("alice", newEvent("r1"))).published, false);
  clock.advance(1);
  assert.equal((await publishOk(engine, "alice", newEvent("r1"))).seq, 3);
  sub.unsubscribe();
  await engine.close();
});

Deno.test("MemoryEngine.publish() keeps each listener's order when a listener publishes", async () => {
  const engine = new MemoryEngine({ clock: new ManualClock(), retention: RETENTION });
  const first: number[] = [];
  const second = new EventRecorder();
  const subFirst = await engine.subscribe("alice", (event: UserEvent) => {
    first.push(event.seq);
    if (event.seq === 1) void engine.publish("alice", newEvent("r1"));
  });
  const subSecond = await engine.subscribe("alice", second.listener);
  await publishOk(engine, "alice", newEvent("r1"));
  assert.deepEqual(first, [1, 2]);
  assert.deepEqual(second.seqs, [1, 2]);
  subFirst.unsubscribe();
  subSecond.unsubscribe();
  await engine.close();
});

Deno.test("MemoryEngine.resolveApproval() accepts a timeout from the very ms of expiresAt on its clock", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION });
  const requested = await engine.requestApproval("alice", approvalRequest("r1", "tc1"), {
    timeoutMs: 30_000,
  });
  assert.ok(requested.published);
  assert.equal(requested.event.data.expiresAt, new Date(clock.now() + 30_000).toISOString());
  const timeout = decision("r1", "tc1", { approved: false, by: "timeout" });
  clock.advance(29_999);
  assert.equal((await engine.resolveApproval("alice", timeout)).outcome, "not_expired");
  clock.advance(1);
  assert.equal((await engine.resolveApproval("alice", timeout)).outcome, "resolved");
  await engine.close();
});

Deno.test("MemoryEngine.approvalState() reads a run's records while it runs and the retention age after", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION });
  const sub = await engine.subscribe("alice", () => {});
  const ids = { runId: "r1", toolCallId: "tc1" };
  await publishOk(engine, "alice", newEvent("r1", "agent_started"));
  await engine.requestApproval("alice", approvalRequest("r1", "tc1"), { timeoutMs: 1_000 });
  await engine.resolveApproval("alice", decision("r1", "tc1"));
  clock.advance(600_000); // ten times the retention age: the run is still going
  assert.equal((await engine.approvalState("alice", ids))?.decision?.by, "user");
  await publishOk(engine, "alice", newEvent("r1", "agent_completed"));
  clock.advance(60_000);
  assert.ok(await engine.approvalState("alice", ids));
  clock.advance(1);
  assert.equal(await engine.approvalState("alice", ids), undefined);
  sub.unsubscribe();
  await engine.close();
});

Deno.test("MemoryEngine.close() cancels the sweep timer", async () => {
  const clock = new ManualClock();
  const engine = new MemoryEngine({ clock, retention: RETENTION });
  assert.equal(clock.pending, 1);
  await engine.close();
  assert.equal(clock.pending, 0);
});

Deno.test("MemoryEngine() throws RangeError for a retention that is not a positive integer", () => {
  for (const retention of [{ count: 0, seconds: 1 }, { count: 1, seconds: 1.5 }]) {
    assert.throws(() => new MemoryEngine({ retention }), RangeError);
  }
  assert.throws(
    () => new MemoryEngine({ retention: RETENTION, sweepIntervalMs: 0 }),
    RangeError,
  );
});
