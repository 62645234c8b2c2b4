/**
 * Race suite 1 — the golden path on PostgreSQL and Redis: hello → ready → chat → ack → the
 * five agent events in order, the reply persisted, history over REST.
 */
import assert from "node:assert/strict";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest("race suite 1: golden path on PostgreSQL and Redis", async ({ start }) => {
  const server = await start();
  const token = await signToken("golden");
  const client = TestClient.open(server.wsUrl);
  const ready = await client.hello(token);
  assert.deepEqual([ready.userId, ready.seq, ready.resumed], ["golden", 0, false]);
  client.send({ type: "chat", id: "g1", text: "what is 2+3*4" });
  const ack = await client.next();
  assert.equal(ack.type, "ack", "the ack comes before the run's events");
  if (ack.type !== "ack") return;
  const events = await client.eventsUntil((e) => e.name === "agent_completed");
  assert.deepEqual(events.map((e) => e.name), [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5]);
  const reply = String(events[4].data.text);
  assert.match(reply, /14/);
  const response = await fetch(`${server.url}/api/threads/${ack.threadId}/messages`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const { messages } = await response.json();
  assert.deepEqual(
    messages.map((m: { role: string; text: string; seq: number }) => [m.role, m.text, m.seq]),
    [["user", "what is 2+3*4", 1], ["assistant", reply, 5]],
  );
  await client.close();
});
