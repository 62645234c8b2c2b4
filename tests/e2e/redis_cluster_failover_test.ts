/**
 * A Redis Cluster failover in the middle of a run: two instances of `main.ts` on a throwaway
 * cluster (three primaries, one replica each) and PostgreSQL, model-backed runs from the local
 * test server. The primary that owns the user's slot is killed while a run streams; its replica
 * takes over. What clients must see (docs/protocol.md#resume): a clean resume or
 * `resumed:false` (the log's process changed, so its epoch did), never a duplicate or a silent
 * gap; and no acknowledged chat is lost: every run ends with a stored terminal status and one
 * terminal event.
 *
 * @module
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { keySlot } from "../../src/bus/_key_slot.ts";
import { RedisEngine } from "../../src/bus/redis_engine.ts";
import type { EventRange } from "../../src/bus/mod.ts";
import type { HistoryMessage } from "../../src/protocol/mod.ts";
import { Gate, startFakeOpenAiServer, stream } from "../_helpers/fake_openai_server.ts";
import { ResumingClient } from "../_helpers/resuming_client.ts";
import { createTestDatabase, randomSuffix, TEST_JWT_SECRET } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { startThrowawayRedisCluster } from "../_helpers/throwaway_services.ts";

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);
const SECRET = new TextEncoder().encode(TEST_JWT_SECRET);

function token(userId: string): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(userId)
    .setIssuedAt().setExpirationTime("2h").sign(SECRET);
}

async function history(server: ServerProcess, userId: string, threadId: string) {
  const response = await fetch(`${server.url}/api/threads/${threadId}/messages`, {
    headers: { authorization: `Bearer ${await token(userId)}` },
  });
  assert.equal(response.status, 200);
  return ((await response.json()) as { messages: HistoryMessage[] }).messages;
}

Deno.test("Redis Cluster failover mid-run: clients resume cleanly or start over, and no acknowledged chat is lost", async () => {
  await using cluster = await startThrowawayRedisCluster();
  await using database = await createTestDatabase();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.reply(stream().text("Before ", "the failover.").gate(hold).text(" After it.", " Done."));
  model.fallback(stream().text("A short ", "reply."));
  const prefix = `failover_${randomSuffix()}`;
  const env = {
    DATABASE_URL: database.url,
    REDIS_URL: cluster.url,
    REDIS_KEY_PREFIX: prefix,
    JWT_SECRET: TEST_JWT_SECRET,
    AGENT: "llm",
    LLM_BASE_URL: model.baseUrl,
    LLM_MODEL: "test-model",
    STREAM_FLUSH_MS: "20",
    READINESS_PROBE_INTERVAL_MS: "100",
    RUN_LEASE_MS: "3000",
  };
  await using a = await startServer({ env });
  await using b = await startServer({ env });
  const servers = [a, b];
  const user = `user-${randomSuffix()}`;
  const clients = servers.map((server, i) =>
    new ResumingClient({
      // Each client starts on its own instance and reconnects to either.
      pickUrl: (() => {
        let first = true;
        return () => {
          const url = first ? server.wsUrl : servers[(i + 1) % 2].wsUrl;
          first = false;
          return url;
        };
      })(),
      token: () => token(user),
    })
  );
  const deadline = () => Date.now() + 30_000;
  await Promise.all(clients.map((client) => client.connect(deadline())));

  // A run that streams until the gate, then waits there.
  const first = await clients[0].chat("c1", "tell me about failovers");
  assert.equal(first.type, "ack");
  await hold.reached;
  await Promise.all(clients.map((client) =>
    client.until(
      () =>
        client.events.some((e) => e.event.runId === first.runId && e.event.name === "agent_delta"),
      "the run's first piece",
      deadline(),
    )
  ));

  // Kill the primary that owns the user's slot; let the run go on at once, mid-failover.
  const primary = await cluster.primaryOf(keySlot(`{${encodeURIComponent(user)}}`));
  await primary.kill();
  hold.release();
  await cluster.waitHealthy();

  // Clients notice (a new epoch closes their connections with 1013) and reconnect by themselves.
  // A chat after the failover goes through.
  const afterDeadline = deadline();
  await clients[1].until(
    () => clients[1].ready && clients[1].segments.length > 1,
    "a reconnect after the failover",
    afterDeadline,
  );
  let second;
  for (;;) {
    // The chat may meet the dependency still recovering (an error frame): ask again.
    second = await clients[1].chat("c2", "and after it?").catch(() => undefined);
    if (second?.type === "ack") break;
    assert.ok(Date.now() < afterDeadline, `c2 refused: ${JSON.stringify(second)}`);
    await clients[1].until(() => clients[1].ready, "a connection", afterDeadline);
  }

  // Every acknowledged chat ends: a stored terminal status, and one terminal event in the log.
  const runs = [first, second].map((ack) => {
    assert.equal(ack.type, "ack");
    return ack;
  });
  const engine = new RedisEngine({
    url: cluster.url,
    keyPrefix: prefix,
    instanceId: "check",
    retention: { count: 10_000, seconds: 3600 },
  });
  let log: EventRange;
  try {
    await engine.whenConnected({ signal: AbortSignal.timeout(10_000) });
    const logDeadline = deadline();
    for (;;) {
      log = await engine.readAfter(user, 0);
      const ended = runs.every((ack) =>
        log.events.some((e) => e.runId === ack.runId && TERMINAL.has(e.name))
      );
      if (ended) break;
      assert.ok(Date.now() < logDeadline, "every run's terminal event reaches the log");
      await new Promise((resolve) => setTimeout(resolve, 100)); // polling the log, bounded
    }
  } finally {
    await engine.close();
  }
  for (const ack of runs) {
    const ends = log.events.filter((e) => e.runId === ack.runId && TERMINAL.has(e.name));
    assert.equal(ends.length, 1, `one terminal event for ${ack.runId}`);
    const messages = await history(a, user, ack.threadId);
    const reply = messages.find((m) => m.runId === ack.runId && m.role === "assistant");
    assert.ok(reply && reply.runStatus !== "running", `${ack.runId} stored as ended`);
    // A client that was there when it ended (its last start came before) receives it.
    for (const [i, client] of clients.entries()) {
      const last = client.segments.at(-1)!.ready;
      if (last.epoch !== log.epoch || last.seq >= ends[0].seq) continue;
      await client.until(
        () => client.events.some((e) => e.event.seq === ends[0].seq && e.epoch === log.epoch),
        `the end of ${ack.runId} on client ${i}`,
        deadline(),
      );
    }
  }

  // What the clients saw: no duplicate, no silent gap; every reconnect either resumed in the
  // same epoch or started over in a new one.
  for (const [i, client] of clients.entries()) {
    await client.stop();
    assert.deepEqual(client.violations, [], `client ${i}`);
    const epochs = new Set(client.segments.map((s) => s.ready.epoch));
    assert.ok(epochs.size >= 2, `client ${i} saw the epoch change: ${[...epochs]}`);
    for (const segment of client.segments.slice(1)) {
      assert.equal(
        segment.ready.resumed,
        segment.ready.epoch === segment.resume?.epoch,
        `client ${i}: resumed exactly when the epoch held`,
      );
    }
  }
});
