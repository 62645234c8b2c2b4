import assert from "node:assert/strict";
import { RedisEngine } from "../../../src/bus/redis_engine.ts";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import { createLogger } from "../../../src/_util/log.ts";
import { LUA_PRELUDE } from "../../../src/bus/_redis_scripts.ts";
import type { ResolveApprovalResult } from "../../../src/bus/event_engine.ts";
import {
  approvalRequest,
  assertSeqRange,
  decision,
  engineConformance,
  EventRecorder,
  newEvent,
  publishOk,
  untilEngineTime,
  userId,
  withDeadline,
} from "../../_helpers/engine_conformance.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { createTestRedisPrefix, randomSuffix, testRedisUrl } from "../../_helpers/services.ts";
import { startThrowawayRedis } from "../../_helpers/throwaway_services.ts";
import { pollUntil } from "../../../scripts/_services/mod.ts";
import { approvalsKey, CONNECT_MS, EngineSet, userKeys, withAdmin } from "./_redis_fixtures.ts";

engineConformance({
  name: "RedisEngine",
  async create({ retention }) {
    const clock = new ManualClock();
    const prefix = createTestRedisPrefix();
    const set = new EngineSet(prefix.url, prefix.prefix, { clock, retention });
    const engine = await set.add();
    let peer: Promise<RedisEngine> | undefined;
    return {
      engine,
      clock,
      peer: () => peer ??= set.add(),
      async dispose() {
        await set[Symbol.asyncDispose]();
        await prefix[Symbol.asyncDispose]();
      },
    };
  },
});

Deno.test("RedisEngine.publish() keeps one user's seqs gap-free across four instances under load", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix, {
    retention: { count: 10_000, seconds: 3600 },
  });
  const publishers = await Promise.all([set.add(), set.add(), set.add(), set.add()]);
  const watcher = await set.add();
  const user = userId();
  const recorder = new EventRecorder();
  const sub = await watcher.subscribe(user, recorder.listener);
  const perInstance = 750;
  const seqs: number[] = [];
  await Promise.all(publishers.map(async (engine, n) => {
    // 10 concurrent lanes per instance.
    await Promise.all(Array.from({ length: 10 }, async (_, lane) => {
      for (let i = lane; i < perInstance; i += 10) {
        seqs.push((await publishOk(engine, user, newEvent(`run-${n}`))).seq);
      }
    }));
  }));
  const total = perInstance * publishers.length;
  assertSeqRange(seqs.sort((a, b) => a - b), 1, total);
  await recorder.waitForSeq(total);
  assertSeqRange(recorder.seqs, 1, total); // live delivery: in order, no gap, no duplicate
  const range = await publishers[0].readAfter(user, 0);
  assertSeqRange(range.events.map((e) => e.seq), 1, total);
  sub.unsubscribe();
});

Deno.test("RedisEngine.publish() names a new epoch, from seq 1, after the user's keys are deleted", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix);
  const [a, b] = [await set.add(), await set.add()];
  const user = userId();
  for (let i = 0; i < 3; i++) await publishOk(a, user, newEvent("r1"));
  const { epoch } = await a.catchUp(user);
  const recorder = new EventRecorder();
  const sub = await b.subscribe(user, recorder.listener);
  const keys = userKeys(prefix.prefix, user);
  await withAdmin(prefix.url, (redis) => redis.del(keys.meta, keys.log, keys.runs));
  const after = await a.publish(user, newEvent("r1"));
  assert.ok(after.published);
  assert.equal(after.event.seq, 1);
  assert.notEqual(after.epoch, epoch);
  await recorder.waitForSeq(1);
  assert.deepEqual(recorder.received.map((r) => [r.event.seq, r.epoch]), [[1, after.epoch]]);
  const resume = await b.catchUp(user, { epoch, after: 3 });
  assert.equal(resume.resumed, false);
  assert.equal(resume.epoch, after.epoch);
  assert.equal(resume.seq, 1);
  sub.unsubscribe();
});

Deno.test("RedisEngine.acquireConnection() forgets an instance's connections once it stops renewing them", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix, { connectionTtlMs: 30_000 });
  const start = Date.UTC(2026, 0, 1);
  const shared = new ManualClock(start);
  const renewing = await set.add({ clock: shared });
  const other = await set.add({ clock: shared });
  const user = userId();
  assert.equal(await renewing.acquireConnection(user, "c1", 2), true);
  assert.equal(await renewing.acquireConnection(user, "c2", 2), true);
  shared.advance(40_000); // renewed at 10, 20, 30 and 40 s
  await renewing.ping(); // the renewals went first on the same connection
  assert.equal(await other.acquireConnection(user, "c3", 2), false);

  // An instance that died: its clock (and so its renewal) stopped at `start`.
  const dead = await set.add({ clock: new ManualClock(start) });
  const late = await set.add({ clock: new ManualClock(start + 30_001) });
  const user2 = userId();
  assert.equal(await dead.acquireConnection(user2, "d1", 1), true);
  assert.equal(await late.acquireConnection(user2, "l1", 1), true); // d1 expired at +30 s
});

Deno.test("RedisEngine.close() gives back the connections it counted", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix);
  const a = await set.add();
  const b = await set.add();
  const user = userId();
  assert.equal(await a.acquireConnection(user, "c1", 1), true);
  assert.equal(await b.acquireConnection(user, "c2", 1), false);
  await a.close();
  assert.equal(await b.acquireConnection(user, "c2", 1), true);
});

Deno.test("RedisEngine.publish() keeps the log key while a run is in flight, then lets it expire by age", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix, {
    retention: { count: 1000, seconds: 60 },
  });
  const engine = await set.add();
  const user = userId();
  const keys = userKeys(prefix.prefix, user);
  const ttls = () =>
    withAdmin(
      prefix.url,
      (admin) =>
        Promise.all([admin.pttl(keys.log), admin.pttl(approvalsKey(prefix.prefix, user, "r1"))]),
    );
  await publishOk(engine, user, newEvent("stray"));
  // No run in flight: the retention age, plus the tenth by which lifetimes may lag (the
  // script pushes them at most every tenth of the age).
  const first = (await ttls())[0];
  assert.ok(first > 60_000 && first <= 66_000, `no run in flight: the retention age: ${first}`);
  await publishOk(engine, user, newEvent("r1", "agent_started"));
  await engine.requestApproval(user, approvalRequest("r1", "tc1"), { timeoutMs: 1_000 });
  let [log, approvals] = await ttls();
  assert.ok(log > 3600_000, `the log outlives the retention age while r1 runs: ${log}`);
  assert.ok(approvals > 3600_000, `so do its approval records: ${approvals}`);
  await publishOk(engine, user, newEvent("r1", "agent_completed"));
  [log, approvals] = await ttls();
  assert.ok(log > 60_000 && log <= 66_000, `back to the retention age: ${log}`);
  assert.ok(approvals > 0 && approvals <= 60_000, `the records, too: ${approvals}`);
});

Deno.test("RedisEngine.readAfter() leaves out a purged thread's entries written without a thread field", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix);
  const engine = await set.add();
  const user = userId();
  await publishOk(engine, user, newEvent("b", "agent_started")); // 1
  const keys = userKeys(prefix.prefix, user);
  // Seq 2 as an instance of the previous version wrote it: fields `t` and `e` only.
  const { seq: _, ...legacy } = { seq: 2, ...newEvent("a", "agent_started") };
  await withAdmin(prefix.url, async (admin) => {
    await admin.hincrby(keys.meta, "seq", 1);
    await admin.xadd(keys.log, "2-0", "t", Date.now(), "e", JSON.stringify(legacy));
  });
  await publishOk(engine, user, newEvent("b")); // 3
  assert.deepEqual((await engine.readAfter(user, 0)).events.map((e) => e.seq), [1, 2, 3]);
  await engine.purgeThread(user, "thread-a");
  const range = await engine.readAfter(user, 0);
  assert.deepEqual([range.complete, range.events.map((e) => e.seq)], [true, [1, 3]]);
});

Deno.test("RedisEngine scripts render the server's time as toISOString() does", async () => {
  const script =
    `${LUA_PRELUDE}\nlocal out = {}\nfor i = 1, #ARGV do out[i] = iso_time(tonumber(ARGV[i])) end\nreturn out`;
  const samples = [0, 951_868_799_999, 951_868_800_000, 4_107_542_399_999, 4_107_542_400_000];
  for (let i = 0; i < 500; i++) samples.push(Math.floor(Math.random() * 13_000_000_000_000));
  const rendered = await withAdmin(
    testRedisUrl(),
    (admin) => admin.eval(script, 0, ...samples) as Promise<string[]>,
  );
  assert.deepEqual(rendered, samples.map((ms) => new Date(ms).toISOString()));
});

Deno.test("RedisEngine.resolveApproval() gives one winner when two instances decide at the same moment, 200 rounds", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix);
  const [a, b, watcher] = [await set.add(), await set.add(), await set.add()];
  const user = userId();
  const recorder = new EventRecorder();
  const sub = await watcher.subscribe(user, recorder.listener);
  await publishOk(a, user, newEvent("r1", "agent_started"));
  const clock = new ManualClock(); // unused by Redis TIME; the helper advances it harmlessly
  const wins = { a: 0, b: 0, timeout: 0 };
  const rounds = 200;
  for (let round = 0; round < rounds; round++) {
    const toolCallId = `tc${round}`;
    // Every other round, the request has expired and B's decision is the timeout's. The
    // request comes from either instance.
    const timeoutRound = round % 2 === 1;
    const requested = await (round % 4 < 2 ? a : b).requestApproval(
      user,
      approvalRequest("r1", toolCallId),
      { timeoutMs: timeoutRound ? 1 : 60_000 },
    );
    assert.ok(requested.published);
    if (timeoutRound) {
      await untilEngineTime(
        { engine: a, clock },
        (requested.event.data as { expiresAt: string }).expiresAt,
      );
    }
    const fromA = decision("r1", toolCallId, { approved: true });
    const fromB = timeoutRound
      ? decision("r1", toolCallId, { approved: false, by: "timeout" })
      : decision("r1", toolCallId, { approved: false, reason: "no" });
    // Both are sent before either answer comes; which is sent first alternates by round.
    const results: ResolveApprovalResult[] = round % 4 < 2
      ? await Promise.all([a.resolveApproval(user, fromA), b.resolveApproval(user, fromB)])
      : (await Promise.all([b.resolveApproval(user, fromB), a.resolveApproval(user, fromA)]))
        .reverse();
    const winners = results.filter((r) => r.outcome === "resolved");
    assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
    const winner = results[0].outcome === "resolved" ? fromA : fromB;
    if (winner === fromA) wins.a++;
    else if (timeoutRound) wins.timeout++;
    else wins.b++;
    const loser = results.find((r) => r.outcome !== "resolved");
    const expected = { outcome: "already", approved: winner.approved, by: winner.by };
    assert.deepEqual(
      loser,
      winner.reason === undefined ? expected : { ...expected, reason: winner.reason },
      `round ${round}`,
    );
    const state = await b.approvalState(user, { runId: "r1", toolCallId });
    assert.equal(state?.decision?.by, winner.by);
    assert.equal(state?.decision?.approved, winner.approved);
  }
  const head = (await a.catchUp(user)).seq;
  assert.equal(head, 1 + rounds * 2, "one request and one decision a round, nothing more");
  await recorder.waitForSeq(head);
  const resolved = recorder.received.filter((r) => r.event.name === "tool_approval_resolved");
  assert.deepEqual(
    resolved.map((r) => r.event.data.toolCallId),
    Array.from({ length: rounds }, (_, i) => `tc${i}`),
  );
  // The race went every way: a user's answer on A, on B, and the timeout each won rounds.
  assert.ok(wins.a > 0 && wins.b > 0 && wins.timeout > 0, JSON.stringify(wins));
  sub.unsubscribe();
});

Deno.test("RedisEngine.acquireConnection() starts the user's live subscription, given back when no subscribe follows", async () => {
  await using prefix = createTestRedisPrefix();
  await using set = new EngineSet(prefix.url, prefix.prefix);
  const [engine, peer] = [await set.add(), await set.add()];
  const user = userId();
  const channel = `${prefix.prefix}:{${encodeURIComponent(user)}}:events`;
  const subscribers = () =>
    withAdmin(prefix.url, async (admin) => {
      const reply = await admin.call("PUBSUB", "SHARDNUMSUB", channel) as [string, number];
      return reply[1];
    });
  // A handshake: count, subscribe, catch up; events after it arrive live.
  assert.equal(await engine.acquireConnection(user, "c1", 2), true);
  assert.equal(await subscribers(), 1, "subscribed beside the count");
  const recorder = new EventRecorder();
  const sub = await engine.subscribe(user, recorder.listener);
  await engine.catchUp(user);
  const published = await publishOk(peer, user, newEvent("r1"));
  await recorder.waitForSeq(published.seq);
  sub.unsubscribe();
  await engine.releaseConnection(user, "c1");
  assert.equal(await subscribers(), 0);
  // Refused by the limit: nothing is left subscribed.
  assert.equal(await peer.acquireConnection(user, "p1", 2), true);
  assert.equal(await peer.acquireConnection(user, "p2", 2), true);
  assert.equal(await engine.acquireConnection(user, "c2", 2), false);
  assert.equal(await subscribers(), 1, "only peer's, held for its first handshake");
  // A handshake that ended between the count and the subscription gives it back.
  await peer.releaseConnection(user, "p1");
  assert.equal(await subscribers(), 0);
});

// ---- faults, on a redis-server of the test's own ------------------------------------------------

Deno.test("RedisEngine.publish() fails within the command timeout when Redis stops answering, and recovers", async () => {
  await using redis = await startThrowawayRedis();
  await using set = new EngineSet(redis.url, `stall_${randomSuffix()}`, { commandTimeoutMs: 500 });
  const engine = await set.add();
  const user = userId();
  await publishOk(engine, user, newEvent("r1"));
  const pid = await withAdmin(redis.url, async (admin) => {
    const info = await admin.info("server");
    return Number(/process_id:(\d+)/.exec(info)![1]);
  });
  Deno.kill(pid, "SIGSTOP");
  try {
    const started = performance.now();
    await assert.rejects(engine.publish(user, newEvent("r1")), DependencyUnavailableError);
    const took = performance.now() - started;
    assert.ok(took >= 400 && took < 2_000, `failed after ${took.toFixed(0)} ms`);
  } finally {
    Deno.kill(pid, "SIGCONT");
  }
  // It reconnects by itself: a publish succeeds again (each try fails fast until then).
  const after = await pollUntil("a publish after the stall", async () => {
    const result = await engine.publish(user, newEvent("r1")).catch(() => undefined);
    return result?.published ? result : undefined;
  }, { timeoutMs: CONNECT_MS });
  assert.ok(after.event.seq >= 2);
});

Deno.test("RedisEngine.subscribe() backfills what pub/sub lost when its connection is killed mid-burst", async () => {
  await using redis = await startThrowawayRedis();
  await using set = new EngineSet(redis.url, `fault_${randomSuffix()}`, {
    retention: { count: 10_000, seconds: 3600 },
  });
  const publisher = await set.add();
  const listener = await set.add();
  const user = userId();
  const recorder = new EventRecorder();
  const sub = await listener.subscribe(user, recorder.listener);
  let seq = 0;
  const burst = async () => {
    await Promise.all(Array.from({ length: 20 }, () => publishOk(publisher, user, newEvent("r1"))));
    seq += 20;
  };
  for (let kill = 0; kill < 2; kill++) {
    for (let i = 0; i < 25; i++) await burst();
    const killed = await withAdmin(
      redis.url,
      (admin) => admin.client("KILL", "TYPE", "pubsub") as Promise<number>,
    );
    assert.ok(killed >= 1, "the subscriber connections were killed");
    // Keep publishing while the subscriber reconnects (its first retry waits 100 ms), so what
    // is published meanwhile is lost to pub/sub, until an event published after the kill
    // arrives: only the new subscription and its backfill can bring it.
    const killedAt = seq;
    while (!recorder.seqs.some((s) => s > killedAt + 20)) {
      assert.ok(seq < killedAt + 20_000, "the listener came back");
      await burst();
    }
  }
  await burst();
  await recorder.waitForSeq(seq, 20_000);
  assertSeqRange(recorder.seqs, 1, seq);
  sub.unsubscribe();
});

Deno.test("RedisEngine.publish() names a new epoch after a Redis restart that lost the data", async () => {
  await using redis = await startThrowawayRedis();
  await using set = new EngineSet(redis.url, `fault_${randomSuffix()}`);
  const publisher = await set.add();
  const listener = await set.add();
  const user = userId();
  const recorder = new EventRecorder();
  const sub = await listener.subscribe(user, recorder.listener);
  for (let i = 0; i < 3; i++) await publishOk(publisher, user, newEvent("r1"));
  await recorder.waitForSeq(3);
  const { epoch } = await publisher.catchUp(user);

  await redis.restart();
  await withDeadline(
    Promise.all([publisher.whenConnected(), listener.whenConnected()]),
    CONNECT_MS,
    "both engines to reconnect",
  );
  const after = await publisher.publish(user, newEvent("r2"));
  assert.ok(after.published);
  assert.equal(after.event.seq, 1);
  assert.notEqual(after.epoch, epoch);
  await recorder.waitFor(() => recorder.received.some((r) => r.epoch !== epoch), "the new epoch");
  const last = recorder.received.at(-1)!;
  assert.deepEqual([last.event.seq, last.epoch], [1, after.epoch]);
  assert.deepEqual(recorder.seqs, [1, 2, 3, 1]);
  assert.equal((await listener.catchUp(user, { epoch, after: 3 })).resumed, false);
  sub.unsubscribe();
});

Deno.test("RedisEngine.catchUp() names a new epoch when Redis comes back with an older snapshot", async () => {
  await using redis = await startThrowawayRedis();
  const prefix = `fault_${randomSuffix()}`;
  await using set = new EngineSet(redis.url, prefix);
  const engine = await set.add();
  const user = userId();
  await publishOk(engine, user, newEvent("r1", "agent_started"));
  for (let i = 0; i < 4; i++) await publishOk(engine, user, newEvent("r1"));
  // The "snapshot": every key as it was at seq 5, the slot's generation marker included.
  const keys = await withAdmin(redis.url, (admin) => admin.keys(`${prefix}:*`));
  assert.ok(keys.some((key) => key.endsWith(":gen")), "the marker is part of the data");
  const snapshot = await withAdmin(
    redis.url,
    (admin) => Promise.all(keys.map((key) => admin.dumpBuffer(key))),
  );
  for (let i = 0; i < 3; i++) await publishOk(engine, user, newEvent("r1"));
  const before = await engine.catchUp(user);
  assert.equal(before.seq, 8); // a client now holds epoch E, seq 8

  await redis.restart();
  await withAdmin(redis.url, async (admin) => {
    for (const [i, key] of keys.entries()) await admin.restore(key, 0, snapshot[i]!);
  });
  await withDeadline(engine.whenConnected(), CONNECT_MS, "the engine to reconnect");
  const after = await engine.catchUp(user, { epoch: before.epoch, after: 8 });
  assert.notEqual(after.epoch, before.epoch);
  assert.equal(after.resumed, false);
  assert.equal(after.seq, 5); // the counter as restored, under a new name
  assert.deepEqual(after.activeRuns, [{ runId: "r1", threadId: "thread-r1", startSeq: 1 }]);
  assert.deepEqual(after.events.map((e) => e.seq), [1, 2, 3, 4, 5]);
  const next = await engine.publish(user, newEvent("r1"));
  assert.ok(next.published);
  assert.deepEqual([next.event.seq, next.epoch], [6, after.epoch]);
});

Deno.test("RedisEngine.ping() and publish() fail fast while Redis is down, and the engine recovers", async () => {
  await using redis = await startThrowawayRedis();
  const lines: string[] = [];
  const log = createLogger("warn", (line) => lines.push(line));
  await using set = new EngineSet(redis.url, `fault_${randomSuffix()}`, { log });
  const engine = await set.add();
  const user = userId();
  const recorder = new EventRecorder();
  const sub = await engine.subscribe(user, recorder.listener);
  await publishOk(engine, user, newEvent("r1"));

  await redis.stop();
  const calls: [string, () => Promise<unknown>][] = [
    ["ping", () => engine.ping()],
    ["publish", () => engine.publish(user, newEvent("r1"))],
    ["catchUp", () => engine.catchUp(user)],
    ["readAfter", () => engine.readAfter(user, 0)],
    ["acquireConnection", () => engine.acquireConnection(user, "c1", 5)],
    ["sendControl", () => engine.sendControl({ type: "cancel", userId: user, runId: "r1" })],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [name, call] of calls) {
      const started = performance.now();
      await assert.rejects(call(), DependencyUnavailableError, name);
      const took = performance.now() - started;
      assert.ok(took < 500, `${name} took ${took.toFixed(0)} ms while Redis was down`);
    }
  }
  await assert.rejects(engine.subscribe(userId(), () => {}), DependencyUnavailableError);

  await redis.restart();
  await withDeadline(engine.whenConnected(), CONNECT_MS, "the engine to reconnect");
  await engine.ping();
  const after = await engine.publish(user, newEvent("r2"));
  assert.ok(after.published);
  assert.equal(after.event.seq, 1); // the restart lost the data: a new epoch
  await recorder.waitFor(() => recorder.received.length === 2, "the event after the outage");
  const warnings = lines.filter((line) => line.includes("redis connection lost"));
  assert.ok(warnings.length <= 2, `one warning per connection and outage, got ${warnings.length}`);
  sub.unsubscribe();
});

Deno.test("RedisEngine() throws RangeError for a bad option", () => {
  const base = {
    url: testRedisUrl(),
    keyPrefix: "unused",
    instanceId: "x",
    retention: { count: 10, seconds: 10 },
  };
  assert.throws(
    () => new RedisEngine({ ...base, retention: { count: 0, seconds: 10 } }),
    RangeError,
  );
  assert.throws(() => new RedisEngine({ ...base, connectionTtlMs: -1 }), RangeError);
});
