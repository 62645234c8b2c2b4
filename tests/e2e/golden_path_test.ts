/**
 * The golden path (docs/protocol.md#after-ready, #run-events) against `deno run main.ts` on embedded defaults (memory store
 * and engine), with real WebSocket clients over TCP.
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
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

async function api(server: ServerProcess, path: string, token?: string) {
  const response = await fetch(server.url + path, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: response.status, body: await response.json() };
}

Deno.test("golden path: hello, ready, chat, ack, the run's events in order, history over REST", async (t) => {
  await using server = await startServer({ env: { AGENT_STEP_DELAY_MS: "5" } });
  const token = await server.devToken("alice");
  const client = TestClient.open(server.wsUrl);
  let threadId = "";
  let runId = "";
  let events: EventFrame[] = [];

  await t.step("ready comes first, with the user and seq 0", async () => {
    const ready = await client.hello(token);
    assert.equal(ready.userId, "alice");
    assert.equal(ready.seq, 0);
    assert.equal(ready.resumed, false);
    assert.deepEqual(ready.activeRuns, []);
    assert.equal(client.socket.protocol, "agentsocket.v1");
  });

  await t.step("a chat is acked before its run's events, which come in order", async () => {
    client.send({ type: "chat", id: "chat-1", text: "what is 2+3*4" });
    const ack = await client.next();
    assert.equal(ack.type, "ack");
    if (ack.type !== "ack") return;
    assert.equal(ack.id, "chat-1");
    threadId = ack.threadId;
    runId = ack.runId;
    events = await client.eventsUntil((e) => e.name === "agent_completed");
    assert.deepEqual(events.map((e) => e.name), RUN_EVENTS);
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
    for (const event of events) {
      assert.equal(event.runId, runId);
      assert.equal(event.threadId, threadId);
      assert.ok(!Number.isNaN(Date.parse(event.ts)));
    }
    assert.deepEqual(events[0].data, { chatId: "chat-1", text: "what is 2+3*4" });
    assert.equal(events[2].data.tool, "calculator");
    assert.equal(events[3].data.toolCallId, events[2].data.toolCallId);
    assert.match(String(events[4].data.text), /14/);
  });

  await t.step("the thread and both messages are in history, with the run's seqs", async () => {
    const threads = await api(server, "/api/threads", token);
    assert.equal(threads.status, 200);
    assert.deepEqual(threads.body.threads.map((th: { id: string }) => th.id), [threadId]);
    assert.equal(threads.body.nextCursor, undefined);
    const messages = await api(server, `/api/threads/${threadId}/messages`, token);
    assert.equal(messages.status, 200);
    const [user, assistant] = messages.body.messages;
    assert.deepEqual([user.role, user.text, user.runId, user.seq], [
      "user",
      "what is 2+3*4",
      runId,
      1,
    ]);
    assert.deepEqual([assistant.role, assistant.runId, assistant.seq], ["assistant", runId, 5]);
    assert.match(assistant.text, /14/);
  });

  await t.step("history is the caller's only: another user gets 404, no token 401", async () => {
    const bob = await server.devToken("bob");
    assert.equal((await api(server, `/api/threads/${threadId}/messages`, bob)).status, 404);
    assert.deepEqual((await api(server, "/api/threads", bob)).body.threads, []);
    assert.equal((await api(server, "/api/threads")).status, 401);
    assert.equal((await api(server, "/api/threads", "garbage")).status, 401);
    assert.equal((await api(server, "/api/threads?limit=0", token)).status, 400);
    assert.equal((await api(server, "/api/threads?limit=201", token)).status, 400);
  });

  await t.step("a resumed connection gets exactly what it missed", async () => {
    const fresh = TestClient.open(server.wsUrl);
    const ready = await fresh.hello(token);
    assert.equal(ready.seq, 5);
    await fresh.close();
    const resumed = TestClient.open(server.wsUrl);
    const again = await resumed.hello(token, { epoch: ready.epoch, after: 2 });
    assert.equal(again.resumed, true);
    const replay = await resumed.eventsUntil((e) => e.seq === 5);
    assert.deepEqual(replay.map((e) => e.seq), [3, 4, 5]);
    await resumed.close();
  });

  await client.close();
  await server.assertNoRaces();
});

Deno.test("pipelining: chats sent before ready are all answered, in order", async () => {
  await using server = await startServer();
  const token = await server.devToken("pipeliner");
  const client = TestClient.open(server.wsUrl);
  await client.opened;
  client.send({ type: "hello", token });
  for (let i = 0; i < 5; i++) client.send({ type: "chat", id: `p${i}`, text: `message ${i}` });
  assert.equal((await client.next()).type, "ready");
  const acks = [];
  for (let i = 0; i < 5; i++) acks.push(await client.nextOf("ack"));
  assert.deepEqual(acks.map((a) => a.id), ["p0", "p1", "p2", "p3", "p4"]);
  await client.close();
  await server.assertNoRaces();
});

Deno.test("a burst of 200 concurrent connections all reach ready, with no close 1011", async () => {
  await using server = await startServer();
  const tokens = await Promise.all(
    Array.from({ length: 40 }, (_, i) => server.devToken(`burst-${i}`)),
  );
  const clients = Array.from({ length: 200 }, () => TestClient.open(server.wsUrl));
  const readies = await Promise.all(clients.map((c, i) => c.hello(tokens[i % 40])));
  assert.equal(readies.length, 200);
  assert.equal(new Set(readies.map((r) => r.connectionId)).size, 200);
  await Promise.all(clients.map((c) => c.close()));
  assert.equal(clients.filter((c) => c.frames.some((f) => f.type === "error")).length, 0);
  await server.assertNoRaces();
});
