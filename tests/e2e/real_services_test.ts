/**
 * agentsocket on PostgreSQL and Redis (SPEC §5, §6): the golden path, history that survives a
 * restart, and two instances that behave as one (same seqs on both, cancel across them).
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
import postgres from "postgres";
import { createServiceEnv, createTestDatabase } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

const RUN_EVENTS = [
  "agent_started",
  "agent_thinking",
  "tool_executing",
  "tool_completed",
  "agent_completed",
];

async function messages(server: ServerProcess, token: string, threadId: string) {
  const response = await fetch(`${server.url}/api/threads/${threadId}/messages`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  return (await response.json()).messages as {
    role: string;
    text: string;
    runId: string;
    seq: number;
  }[];
}

Deno.test("PostgreSQL + Redis: golden path, and history survives a restart", async () => {
  await using services = await createServiceEnv();
  const first = await startServer({ env: services.env });
  const token = await first.devToken("alice");
  const client = TestClient.open(first.wsUrl);
  const ready = await client.hello(token);
  assert.equal(ready.seq, 0);
  client.send({ type: "chat", id: "c1", text: "what is 2+3*4" });
  const ack = await client.nextOf("ack");
  const events = await client.eventsUntil((e) => e.name === "agent_completed");
  assert.deepEqual(events.map((e) => e.name), RUN_EVENTS);
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
  assert.match(String(events[4].data.text), /14/);
  const before = await messages(first, token, ack.threadId);
  assert.deepEqual(before.map((m) => [m.role, m.seq]), [["user", 1], ["assistant", 5]]);
  await client.close();
  assert.equal((await first.stop("SIGTERM")).code, 0);
  await first.assertNoRaces(); // up to its exit

  await using second = await startServer({ env: services.env, port: first.port });
  assert.deepEqual(await messages(second, token, ack.threadId), before);
  // The event log lives in Redis: the same epoch, and a resume from 3 replays 4 and 5.
  const again = TestClient.open(second.wsUrl);
  const resumed = await again.hello(token, { epoch: ready.epoch, after: 3 });
  assert.equal(resumed.resumed, true);
  assert.equal(resumed.seq, 5);
  assert.deepEqual((await again.eventsUntil((e) => e.seq === 5)).map((e) => e.seq), [4, 5]);
  // The same chat id is still remembered: a duplicate ack, no second run.
  again.send({ type: "chat", id: "c1", text: "what is 2+3*4" });
  const duplicate = await again.nextOf("ack");
  assert.deepEqual(duplicate, { ...ack, duplicate: true, status: "completed" });
  await again.close();
  await second.assertNoRaces();
});

Deno.test("two instances sharing Redis behave as one: same seqs on both, cancel across them", async () => {
  await using services = await createServiceEnv();
  await using a = await startServer({ env: { ...services.env, AGENT_STEP_DELAY_MS: "500" } });
  await using b = await startServer({ env: { ...services.env, AGENT_STEP_DELAY_MS: "500" } });
  const token = await a.devToken("bob");
  const onA = TestClient.open(a.wsUrl);
  const onB = TestClient.open(b.wsUrl);
  await onA.hello(token);
  await onB.hello(token);

  onA.send({ type: "chat", id: "x1", text: "hello from A" });
  const ack = await onA.nextOf("ack");
  const seenOnA = await onA.eventsUntil((e) => e.name === "agent_completed");
  const seenOnB = await onB.eventsUntil((e) => e.name === "agent_completed");
  const strip = (events: EventFrame[]) =>
    events.map(({ seq, name, runId }) => ({ seq, name, runId }));
  assert.deepEqual(strip(seenOnB), strip(seenOnA));
  assert.equal(seenOnA[0].runId, ack.runId);

  // A run on A, cancelled from B.
  onA.send({ type: "chat", id: "x2", text: "a longer one", threadId: ack.threadId });
  const ack2 = await onA.nextOf("ack");
  await onB.eventsUntil((e) => e.runId === ack2.runId && e.name === "tool_executing");
  onB.send({ type: "cancel", runId: ack2.runId });
  const tail = await onA.eventsUntil((e) => e.runId === ack2.runId && e.name === "agent_cancelled");
  const closing = tail.filter((e) => e.runId === ack2.runId && e.name === "tool_completed").at(-1);
  assert.equal((closing?.data.error as { code?: string } | undefined)?.code, "cancelled");
  const onBTail = await onB.eventsUntil((e) =>
    e.runId === ack2.runId && e.name === "agent_cancelled"
  );
  assert.equal(onBTail.at(-1)?.seq, tail.at(-1)?.seq);

  // A cancel of a finished run, from either instance, gets run_finished.
  onB.send({ type: "cancel", runId: ack.runId });
  const finished = await onB.nextOf("error");
  assert.deepEqual([finished.code, finished.ref], ["run_finished", ack.runId]);

  await onA.close();
  await onB.close();
  await a.assertNoRaces();
  await b.assertNoRaces();
});

Deno.test("a schema migration that fails stops start-up with one line, exit 1", async () => {
  await using database = await createTestDatabase();
  const sql = postgres(database.url, { max: 1, onnotice: () => {} });
  await sql`CREATE TABLE threads (unrelated integer)`;
  await sql.end();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname],
    env: { DATABASE_URL: database.url, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "silent" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 1);
  const stderr = new TextDecoder().decode(output.stderr).trim();
  assert.equal(stderr.split("\n").length, 1, stderr);
  assert.match(stderr, /0001_init\.sql/);
});
