/**
 * Race suite 2 — rapid connection attempts: 1,000 concurrent connects, each sending `hello`
 * at once and a `ping` right behind it, the way a client that treats "open" as "ready" does.
 * Every one reaches `ready`, then gets its `pong`; no 1011, no error frame. Without the
 * pre-ready queue the server answers the ping before `ready`, which the detector refuses.
 */
import assert from "node:assert/strict";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

const CONNECTIONS = 1000;
const USERS = 250; // 4 connections each, under the per-user limit of 10

raceTest("race suite 2: 1,000 concurrent connects all reach ready", async ({ start }) => {
  const server = await start({ env: { TEST_DELAY_VERIFY_MS: "20" } });
  const tokens = await Promise.all(
    Array.from({ length: USERS }, (_, i) => signToken(`rapid-${i}`)),
  );
  const clients = Array.from({ length: CONNECTIONS }, () => TestClient.open(server.wsUrl));
  try {
    await Promise.all(clients.map(async (client, i) => {
      await client.opened;
      client.send({ type: "hello", token: tokens[i % USERS] });
      client.send({ type: "ping" });
    }));
    const results = await Promise.allSettled(clients.map(async (client) => {
      const first = await client.next(15_000);
      assert.equal(first.type, "ready");
      const second = await client.next(5_000);
      assert.equal(second.type, "pong");
    }));
    const failed = results.filter((r) => r.status === "rejected");
    assert.equal(
      failed.length,
      0,
      `${failed.length} of ${CONNECTIONS} failed: ${
        (failed[0] as PromiseRejectedResult | undefined)?.reason
      }`,
    );
    assert.equal(clients.filter((c) => c.frames.some((f) => f.type === "error")).length, 0);
  } finally {
    await Promise.all(clients.map((client) => client.close().catch(() => {})));
  }
  assert.equal(await server.metric("agentsocket_connection_close_total", 'code="1011"'), 0);
}, ["queue_before_ready"]);
