/**
 * Race suite 3 — pipelining: chat frames sent between `hello` and `ready` (the handshake
 * stretched by a slow token verification) are all answered after `ready`, in order.
 */
import assert from "node:assert/strict";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest("race suite 3: chats sent before ready are all answered, in order", async ({ start }) => {
  const server = await start({ env: { TEST_DELAY_VERIFY_MS: "300" } });
  const client = TestClient.open(server.wsUrl);
  await client.opened;
  client.send({ type: "hello", token: await signToken("pipeliner") });
  const ids = Array.from({ length: 10 }, (_, i) => `pipe-${i}`);
  for (const id of ids) client.send({ type: "chat", id, text: `message ${id}` });
  assert.equal((await client.next()).type, "ready");
  const acks = [];
  for (let i = 0; i < ids.length; i++) acks.push(await client.nextOf("ack"));
  assert.deepEqual(acks.map((a) => a.id), ids);
  assert.equal(new Set(acks.map((a) => a.threadId)).size, ids.length, "each chat its own thread");
  assert.equal(client.frames.filter((f) => f.type === "error").length, 0);
  await client.close();
}, ["queue_before_ready"]);
