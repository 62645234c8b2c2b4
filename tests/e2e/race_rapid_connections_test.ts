/**
 * Race suite 2 — rapid connection attempts: 1,000 concurrent connects, each sending `hello`
 * at once and a `ping` right behind it, the way a client that treats "open" as "ready" does.
 * Every one reaches `ready`, then gets its `pong`; no 1011, no error frame. Without the
 * pre-ready queue the server answers the ping before `ready`: the detector refuses that send
 * and counts `frame_before_ready`, which is what the naive run must fail on.
 */
import assert from "node:assert/strict";
import type { ServerFrame } from "../../src/protocol/mod.ts";
import { RaceObserved } from "../_helpers/race_observed.ts";
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
    // Each client: `ready` first, then, before the answer to a frame sent after ready, the pong.
    const results = await Promise.allSettled(clients.map(async (client): Promise<ServerFrame[]> => {
      await client.nextReady(15_000);
      return await client.sync(15_000);
    }));
    const race = results.find((r) => r.status === "rejected" && r.reason instanceof RaceObserved);
    if (race) throw (race as PromiseRejectedResult).reason;
    const failed = results.filter((r) => r.status === "rejected");
    assert.equal(
      failed.length,
      0,
      `${failed.length} of ${CONNECTIONS} failed: ${
        (failed[0] as PromiseRejectedResult | undefined)?.reason
      }`,
    );
    const answered = results.map((r) => (r as PromiseFulfilledResult<ServerFrame[]>).value);
    const unanswered = answered.filter((frames) => !frames.some((f) => f.type === "pong")).length;
    // A ping left unanswered was answered before ready, and refused: the server names that race.
    if (unanswered > 0) await server.assertNoRaces();
    assert.equal(unanswered, 0, `${unanswered} of ${CONNECTIONS} pings were never answered`);
    assert.equal(answered.filter((frames) => frames.some((f) => f.type === "error")).length, 0);
  } finally {
    await Promise.all(clients.map((client) => client.close().catch(() => {})));
  }
}, { proves: [{ guards: ["queue_before_ready"], race: "frame_before_ready" }] });
