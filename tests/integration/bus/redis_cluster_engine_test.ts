/**
 * The Redis engine on a Redis Cluster (TEST_REDIS_CLUSTER_URL): the whole conformance suite, and
 * what a cluster adds: a user's keys and channel in one slot, users spread over the primaries,
 * and a user's live events only on the shard that owns the user.
 */
import assert from "node:assert/strict";
import { keySlot } from "../../../src/bus/_key_slot.ts";
import {
  engineConformance,
  EventRecorder,
  newEvent,
  publishOk,
  userId,
} from "../../_helpers/engine_conformance.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import {
  clusterAdmin,
  createTestRedisClusterPrefix,
  NO_CLUSTER_MESSAGE,
  testRedisClusterUrl,
} from "../../_helpers/redis_cluster.ts";
import { EngineSet } from "./_redis_fixtures.ts";

const url = testRedisClusterUrl();

if (!url) {
  Deno.test("RedisEngine on a Redis Cluster", () => {
    throw new Error(NO_CLUSTER_MESSAGE);
  });
} else {
  const clusterUrl = url;

  engineConformance({
    name: "RedisEngine (cluster)",
    async create({ retention }) {
      const clock = new ManualClock();
      const prefix = createTestRedisClusterPrefix(clusterUrl);
      const set = new EngineSet(clusterUrl, prefix.prefix, { clock, retention });
      const engine = await set.add();
      let peer: Promise<typeof engine> | undefined;
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

  Deno.test("RedisEngine (cluster) keeps every key of a user in the user's slot, over every primary", async () => {
    await using prefix = createTestRedisClusterPrefix(clusterUrl);
    await using set = new EngineSet(clusterUrl, prefix.prefix);
    const engine = await set.add();
    const users = Array.from({ length: 24 }, () => userId());
    for (const user of users) {
      await publishOk(engine, user, newEvent("r1", "agent_started"));
      await engine.requestApproval(user, {
        threadId: "thread-r1",
        runId: "r1",
        data: { toolCallId: "tc1", tool: "write_file", input: {} },
        ts: new Date().toISOString(),
      }, { timeoutMs: 60_000 });
      await publishOk(engine, user, newEvent("r1", "agent_completed"));
      await engine.acquireConnection(user, "c1", 5);
    }
    const admin = clusterAdmin(clusterUrl);
    try {
      await admin.ping();
      const owners = new Set<string>();
      for (const user of users) {
        const tag = `{${encodeURIComponent(user)}}`;
        const slot = keySlot(tag);
        const keys: string[] = [];
        for (const node of admin.nodes("master")) {
          const [, found] = await node.scan(
            "0",
            "MATCH",
            `${prefix.prefix}:${tag}:*`,
            "COUNT",
            10_000,
          );
          if (found.length > 0) owners.add(`${node.options.port}`);
          keys.push(...found);
        }
        assert.deepEqual(
          keys.map((key) => key.slice(`${prefix.prefix}:${tag}:`.length)).sort(),
          ["approvals:r1", "conns", "ended:r1", "log", "meta"],
        );
        for (const key of keys) {
          assert.equal(Number(await admin.cluster("KEYSLOT", key)), slot, key);
        }
        const channel = `${prefix.prefix}:${tag}:events`;
        assert.equal(Number(await admin.cluster("KEYSLOT", channel)), slot);
      }
      assert.equal(
        owners.size,
        admin.nodes("master").length,
        "the users spread over every primary",
      );
    } finally {
      admin.disconnect();
    }
  });

  Deno.test("RedisEngine (cluster) subscribes a user's events on the shard that owns the user only", async () => {
    await using prefix = createTestRedisClusterPrefix(clusterUrl);
    await using set = new EngineSet(clusterUrl, prefix.prefix);
    const [engine, peer] = [await set.add(), await set.add()];
    const user = userId();
    const recorder = new EventRecorder();
    const sub = await engine.subscribe(user, recorder.listener);
    const channel = `${prefix.prefix}:{${encodeURIComponent(user)}}:events`;
    const admin = clusterAdmin(clusterUrl);
    try {
      await admin.ping();
      const slot = keySlot(channel);
      const counts = new Map<number, number>();
      for (const node of admin.nodes("master")) {
        const reply = await node.call("PUBSUB", "SHARDNUMSUB", channel) as [string, number];
        counts.set(node.options.port!, reply[1]);
      }
      const owner = admin.slots[slot][0];
      for (const [port, count] of counts) {
        assert.equal(count, owner.endsWith(`:${port}`) ? 1 : 0, `subscribers on :${port}`);
      }
      const published = await publishOk(peer, user, newEvent("r1"));
      await recorder.waitForSeq(published.seq);
      assert.deepEqual(recorder.seqs, [published.seq]);
    } finally {
      admin.disconnect();
      sub.unsubscribe();
    }
  });
}
