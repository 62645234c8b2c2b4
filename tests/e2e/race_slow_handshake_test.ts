/**
 * Race suite 4 — slow authentication and slow dependencies: token verification and the
 * subscription are stretched (test-only knobs), a run publishes all its events while the
 * resuming connection's handshake is still going, and every one of them arrives after `ready`,
 * in order, none lost. A handler that reads the replay before subscribing loses them: the naive
 * run must fail on `lost_event`.
 */
import assert from "node:assert/strict";
import { assertSeqs } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest(
  "race suite 4: events published during a slow handshake arrive after ready, in order",
  async ({ start }) => {
    const server = await start({
      env: {
        AGENT_STEP_DELAY_MS: "150",
        TEST_DELAY_VERIFY_MS: "200",
        TEST_DELAY_SUBSCRIBE_MS: "2500",
      },
    });
    const token = await signToken("slowpoke");
    const driver = TestClient.open(server.wsUrl);
    const position = await driver.hello(token);

    const watcher = TestClient.open(server.wsUrl);
    await watcher.opened;
    watcher.send({ type: "hello", token, resume: { epoch: position.epoch, after: position.seq } });
    driver.send({ type: "chat", id: "slow-1", text: "hello" });
    const all = await driver.eventsUntil((e) => e.name === "agent_completed");
    assert.equal(watcher.frames.length, 0, "the watcher's handshake is still going");

    const ready = await watcher.nextReady();
    assert.equal(ready.resumed, true);
    // Every event the watcher gets comes before the answer to a frame it sends now.
    const seen = (await watcher.sync()).filter((f) => f.type === "event");
    assertSeqs(seen, all.map((e) => e.seq), "the watcher");
    await driver.close();
    await watcher.close();
  },
  { proves: [{ guards: ["subscribe_before_catch_up"], race: "lost_event" }] },
);
