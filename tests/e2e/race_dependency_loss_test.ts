/**
 * Race suite 11 — dependency loss mid-run: the server's Redis (its own throwaway instance) is
 * killed while runs are in flight. The process does not crash and reports no unhandled
 * rejection; the runs end with a terminal status stored in PostgreSQL; new handshakes get 1013
 * and chats get `unavailable` meanwhile; when Redis comes back (empty) everything recovers by
 * itself and the runs' terminal events are published.
 */
import assert from "node:assert/strict";
import { signToken } from "../_helpers/race_suite.ts";
import {
  createTestDatabase,
  createTestRedisPrefix,
  TEST_JWT_SECRET,
} from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import { startThrowawayPostgres, startThrowawayRedis } from "../_helpers/throwaway_services.ts";
import { TestClient } from "../_helpers/test_client.ts";

Deno.test("race suite 11: Redis killed mid-run: no crash, clean errors, runs ended and stored, recovery", async () => {
  await using database = await createTestDatabase();
  await using redis = await startThrowawayRedis();
  await using server = await startServer({
    env: {
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      JWT_SECRET: TEST_JWT_SECRET,
      AGENT_STEP_DELAY_MS: "200",
      AGENT_THINKING_STEPS: "20",
      READINESS_PROBE_INTERVAL_MS: "200",
    },
  });
  const users = ["lost-1", "lost-2"];
  const tokens = await Promise.all(users.map((u) => signToken(u)));
  const clients = users.map(() => TestClient.open(server.wsUrl));
  await Promise.all(clients.map((c, i) => c.hello(tokens[i])));
  const acks = await Promise.all(clients.map(async (client, i) => {
    client.send({ type: "chat", id: `run-${i}`, text: "a long one" });
    const ack = await client.nextOf("ack");
    await client.eventsUntil((e) => e.name === "agent_thinking");
    return ack;
  }));

  await redis.kill();
  await server.waitFor("/health/ready", 503, 15_000);
  const report = await (await fetch(`${server.url}/health/ready`)).json();
  assert.equal(report.checks.redis.status, "down");

  // Meanwhile: a new handshake is closed 1013, a chat on an open socket gets unavailable.
  const newcomer = TestClient.open(server.wsUrl);
  await newcomer.opened;
  newcomer.send({ type: "hello", token: tokens[0] });
  assert.equal((await newcomer.waitClosed()).code, 1013);
  clients[0].send({ type: "chat", id: "during", text: "anyone?" });
  const refused = await clients[0].nextOf("error");
  assert.deepEqual([refused.code, refused.ref], ["unavailable", "during"]);

  // The runs in flight end, and their terminal status is stored in PostgreSQL.
  const statuses = async () =>
    await Promise.all(clients.map(async (client, i) => {
      client.send({ type: "chat", id: `run-${i}`, text: "a long one" });
      const frame = await client.next();
      return frame.type === "ack" ? frame.status : frame.type;
    }));
  const deadline = Date.now() + 15_000;
  let seen = await statuses();
  while (seen.some((s) => s === "running") && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    seen = await statuses();
  }
  assert.deepEqual(seen, ["failed", "failed"]);

  await redis.restart();
  await server.waitFor("/health/ready", 200, 20_000);

  // Recovered: a fresh connection resumes nothing (the log was lost) but sees the runs' ends,
  // and a new chat runs end to end.
  const back = TestClient.open(server.wsUrl);
  const ready = await back.hello(tokens[0], { epoch: "from-before", after: 3 });
  assert.equal(ready.resumed, false);
  back.send({ type: "chat", id: "after", text: "what is 6*7" });
  await back.nextOf("ack");
  const events = await back.eventsUntil((e) => e.name === "agent_completed");
  assert.match(String(events.at(-1)!.data.text), /42/);
  // Each lost run's end is published once Redis is back: replay the new log from its start.
  const replays = await Promise.all(users.map(async (_, i) => {
    const replay = TestClient.open(server.wsUrl);
    const fresh = await replay.hello(tokens[i]);
    const resumed = TestClient.open(server.wsUrl);
    await resumed.hello(tokens[i], { epoch: fresh.epoch, after: 0 });
    const log = await resumed.eventsUntil((e) =>
      e.runId === acks[i].runId && e.name === "agent_failed"
    );
    assert.equal(
      log.filter((e) => e.runId === acks[i].runId && e.name === "agent_failed").length,
      1,
    );
    return [replay, resumed];
  }));

  await Promise.all([...clients, back, ...replays.flat()].map((c) => c.close()));
  const alive = await Promise.race([server.status.then(() => false), Promise.resolve(true)]);
  assert.ok(alive, "the process is still running");
  assert.doesNotMatch(server.logs(), /Uncaught|unhandled/i);
  await server.assertNoRaces();
});

Deno.test("PostgreSQL lost: a chat gets unavailable and no ack, nothing crashes, and it recovers", async () => {
  await using pg = await startThrowawayPostgres();
  await using redis = createTestRedisPrefix();
  await using server = await startServer({
    env: {
      DATABASE_URL: pg.url,
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: redis.prefix,
      JWT_SECRET: TEST_JWT_SECRET,
      READINESS_PROBE_INTERVAL_MS: "200",
    },
  });
  const token = await signToken("unlucky");
  const client = TestClient.open(server.wsUrl);
  await client.hello(token);

  await pg.kill();
  client.send({ type: "chat", id: "lost-chat", text: "hello" });
  const refused = await client.next(20_000);
  assert.equal(refused.type, "error", "no ack while PostgreSQL is down");
  if (refused.type === "error") {
    assert.deepEqual([refused.code, refused.ref], ["unavailable", "lost-chat"]);
  }
  await server.waitFor("/health/ready", 503, 15_000);
  const history = await fetch(`${server.url}/api/threads`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(history.status, 503);
  await history.body?.cancel();
  const newcomer = TestClient.open(server.wsUrl);
  await newcomer.opened;
  newcomer.send({ type: "hello", token });
  assert.equal((await newcomer.waitClosed()).code, 1013);

  await pg.start();
  await server.waitFor("/health/ready", 200, 30_000);
  client.send({ type: "chat", id: "lost-chat", text: "hello" });
  const ack = await client.nextOf("ack", 15_000);
  assert.equal(ack.duplicate, undefined, "the refused chat was not stored: it runs now, once");
  await client.eventsUntil((e) => e.name === "agent_completed");
  await client.close();
  assert.doesNotMatch(server.logs(), /Uncaught|unhandled/i);
  await server.assertNoRaces();
});
