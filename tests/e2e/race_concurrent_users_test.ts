/**
 * Race suite 5 — concurrent users: 50 users × 2 connections, all chatting at once. No event
 * reaches the wrong user, both connections of a user see identical seq sequences, no gaps.
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

const USERS = 50;

raceTest("race suite 5: 50 users x 2 connections chatting at once", async ({ start }) => {
  const server = await start({ env: { AGENT_STEP_DELAY_MS: "10" } });
  const users = await Promise.all(Array.from({ length: USERS }, async (_, i) => {
    const userId = `crowd-${i}`;
    const token = await signToken(userId);
    const pair = [TestClient.open(server.wsUrl), TestClient.open(server.wsUrl)];
    await Promise.all(pair.map((c) => c.hello(token)));
    return { userId, pair };
  }));
  try {
    // Every connection of every user chats at once: 2 runs per user, on 2 threads.
    for (const { userId, pair } of users) {
      pair.forEach((client, i) =>
        client.send({ type: "chat", id: `${userId}-${i}`, text: `hello from ${userId}` })
      );
    }
    await Promise.all(users.map(async ({ userId, pair }) => {
      const acks = await Promise.all(pair.map((c) => c.nextOf("ack")));
      const runIds = new Set(acks.map((a) => a.runId));
      const streams: EventFrame[][] = await Promise.all(pair.map(async (client) => {
        const done = new Set<string>();
        return await client.eventsUntil((e) => {
          if (e.name === "agent_completed") done.add(e.runId);
          return done.size === runIds.size;
        });
      }));
      for (const events of streams) {
        for (const event of events) {
          assert.ok(runIds.has(event.runId), `${userId} got an event of another user's run`);
          if (event.name === "agent_started" || event.name === "agent_completed") {
            assert.match(
              String(event.data.text),
              new RegExp(`hello from ${userId}$`),
              `${userId} saw ${JSON.stringify(event)}`,
            );
          }
        }
        assertSeqs(events, seqRange(1, events.length), userId);
      }
      assert.deepEqual(streams[0].map((e) => e.seq), streams[1].map((e) => e.seq));
      assert.deepEqual(streams[0].map((e) => e.name), streams[1].map((e) => e.name));
    }));
  } finally {
    await Promise.all(users.flatMap(({ pair }) => pair.map((c) => c.close())));
  }
});
