/**
 * How the Redis engine notices that the process behind a user's log changed (docs: the module
 * doc of src/bus/redis_engine.ts): a failover to a replica that lagged, seen through a proxy
 * that keeps the engine's TCP connections; instances agreeing on one script generation, so
 * that an epoch is named once per change and not once per instance; and a `SCRIPT FLUSH`.
 * Restarts and restored snapshots are in redis_engine_test.ts.
 */
import assert from "node:assert/strict";
import { newEvent, publishOk, userId } from "../../_helpers/engine_conformance.ts";
import { randomSuffix } from "../../_helpers/services.ts";
import { startSwitchingProxy } from "../../_helpers/switching_proxy.ts";
import { startThrowawayRedis } from "../../_helpers/throwaway_services.ts";
import { pollUntil } from "../../../scripts/_services/mod.ts";
import { EngineSet, withAdmin } from "./_redis_fixtures.ts";

Deno.test("RedisEngine.catchUp() names a new epoch after a failover to a lagging replica behind a proxy that kept the connection", async () => {
  await using primary = await startThrowawayRedis();
  await using replica = await startThrowawayRedis();
  await withAdmin(replica.url, (admin) => admin.replicaof("127.0.0.1", primary.port));
  await using proxy = startSwitchingProxy(primary.port);
  await using set = new EngineSet(proxy.url, `failover_${randomSuffix()}`);
  const engine = await set.add();
  const user = userId();
  await publishOk(engine, user, newEvent("r1", "agent_started"));
  for (let i = 0; i < 4; i++) await publishOk(engine, user, newEvent("r1"));
  // The replica has seq 5; then it is promoted while the primary goes on to seq 8 (lag).
  await pollUntil("the replica to catch up", async () => {
    const acked = await withAdmin(primary.url, (admin) => admin.wait(1, 1_000));
    return acked >= 1 ? true : undefined;
  }, { timeoutMs: 10_000 });
  await withAdmin(replica.url, (admin) => admin.replicaof("NO", "ONE"));
  for (let i = 0; i < 3; i++) await publishOk(engine, user, newEvent("r1"));
  const before = await engine.catchUp(user);
  assert.equal(before.seq, 8); // a client now holds epoch E, seq 8
  const boots = engine.scriptBoots;

  await proxy.switchTo(replica.port);
  const after = await engine.catchUp(user, { epoch: before.epoch, after: 5 });
  assert.notEqual(after.epoch, before.epoch, "the rewound counter is not reused under E");
  assert.equal(after.resumed, false);
  assert.equal(after.seq, 5);
  assert.deepEqual(after.activeRuns.map((r) => [r.runId, r.startSeq]), [["r1", 1]]);
  assert.ok(engine.scriptBoots > boots, "the new server answered NOSCRIPT, on the same socket");
  const next = await engine.publish(user, newEvent("r1"));
  assert.ok(next.published);
  assert.deepEqual([next.event.seq, next.epoch], [6, after.epoch]);
});

Deno.test("RedisEngine instances agree on one epoch after a restart, whichever publishes first", async () => {
  await using redis = await startThrowawayRedis();
  await using set = new EngineSet(redis.url, `converge_${randomSuffix()}`);
  const engines = [await set.add(), await set.add(), await set.add()];
  const users = Array.from({ length: 6 }, () => userId());
  for (const user of users) await publishOk(engines[0], user, newEvent("r1"));
  const kept = await engines[1].catchUp(users[0]);
  const bootsBefore = engines.reduce((sum, engine) => sum + engine.scriptBoots, 0);

  // A restart that keeps the data (as with RDB or AOF): every log stays, its process changes.
  const keys = await withAdmin(redis.url, (admin) => admin.keys("*"));
  const dump = await withAdmin(redis.url, (a) => Promise.all(keys.map((k) => a.dumpBuffer(k))));
  await redis.restart();
  await withAdmin(redis.url, async (admin) => {
    for (const [i, key] of keys.entries()) await admin.restore(key, 0, dump[i]!);
  });
  await Promise.all(engines.map((engine) => engine.whenConnected()));

  // All three at once, on every user: each user gets one new epoch, the same on every instance.
  const rounds = await Promise.all(
    engines.map((engine) =>
      Promise.all(users.map((user) => engine.publish(user, newEvent(`r-${user}`))))
    ),
  );
  for (let u = 0; u < users.length; u++) {
    const results = rounds.map((round) => {
      const result = round[u];
      assert.ok(result.published);
      return result;
    });
    const epochs = new Set(results.map((result) => result.epoch));
    assert.equal(epochs.size, 1, `one epoch for ${users[u]}`);
    assert.ok(!epochs.has(kept.epoch), "a new one");
    assert.deepEqual(results.map((result) => result.event.seq).sort(), [2, 3, 4]);
  }
  // And it stays: publishing in turn from each instance never renames it again.
  const epoch = (await engines[0].catchUp(users[0])).epoch;
  for (let i = 0; i < 9; i++) {
    const result = await engines[i % 3].publish(users[0], newEvent("r1"));
    assert.ok(result.published);
    assert.equal(result.epoch, epoch);
  }
  const boots = engines.reduce((sum, engine) => sum + engine.scriptBoots, 0) - bootsBefore;
  assert.ok(boots <= 3, `at most one generation booted per instance after the restart: ${boots}`);
});

Deno.test("RedisEngine.publish() names a new epoch after SCRIPT FLUSH, keeping the seqs", async () => {
  await using redis = await startThrowawayRedis();
  await using set = new EngineSet(redis.url, `flush_${randomSuffix()}`);
  const engine = await set.add();
  const user = userId();
  const first = await publishOk(engine, user, newEvent("r1"));
  const { epoch } = await engine.catchUp(user);
  await withAdmin(redis.url, (admin) => admin.script("FLUSH"));
  const after = await engine.publish(user, newEvent("r1"));
  assert.ok(after.published);
  assert.notEqual(after.epoch, epoch);
  assert.equal(after.event.seq, first.seq + 1);
});
