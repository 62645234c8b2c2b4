/**
 * Race suite 3 — pipelining: chat frames sent between `hello` and `ready` (the handshake
 * stretched by a slow token verification and a slow subscription) are all answered after
 * `ready`, in order. A server that handles them before `ready` sends their answers too early;
 * the detector refuses those sends and counts `frame_before_ready`, which is what the naive run
 * must fail on.
 */
import assert from "node:assert/strict";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest("race suite 3: chats sent before ready are all answered, in order", async ({ start }) => {
  // Verification and subscription both stretched: a naive server that waits only for the
  // principal still handles the chats well before `ready`.
  // Ten runs of one user may be in flight at once: the limit must not refuse any of them.
  const server = await start({
    env: {
      TEST_DELAY_VERIFY_MS: "300",
      TEST_DELAY_SUBSCRIBE_MS: "1000",
      MAX_ACTIVE_RUNS_PER_USER: "10",
    },
  });
  const client = TestClient.open(server.wsUrl);
  await client.opened;
  client.send({ type: "hello", token: await signToken("pipeliner") });
  const ids = Array.from({ length: 10 }, (_, i) => `pipe-${i}`);
  for (const id of ids) client.send({ type: "chat", id, text: `message ${id}` });
  await client.nextReady();
  // Everything answered before a frame sent now: the ten chats' acks, in order.
  const answered = await client.sync();
  const acks = answered.filter((f) => f.type === "ack");
  // An answer missing here was sent (and refused) before ready: the server names that race.
  if (acks.length !== ids.length) await server.assertNoRaces();
  assert.deepEqual(acks.map((a) => a.id), ids, "every chat acked after ready, in order");
  assert.equal(new Set(acks.map((a) => a.threadId)).size, ids.length, "each chat its own thread");
  assert.deepEqual(answered.filter((f) => f.type === "error"), []);
  await client.close();
}, { proves: [{ guards: ["queue_before_ready"], race: "frame_before_ready" }] });
