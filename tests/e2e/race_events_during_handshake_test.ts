/**
 * Race suite 13 — events during a handshake: a user's run is in flight while a second
 * connection of the user shakes hands, its catch-up read stretched (a test-only knob), so the
 * run publishes live events between the connection's subscription and its `ready`. They wait
 * for `ready` and arrive once each, merged with the catch-up by seq. A server that forwards
 * them at once sends events before `ready` (the detector refuses them and counts
 * `event_before_ready`); one that does not merge by seq delivers some twice (`duplicate_seq`).
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest(
  "race suite 13: live events during a handshake wait for ready and arrive once, in order",
  async ({ start }) => {
    const server = await start({
      env: {
        AGENT_STEP_DELAY_MS: "200",
        AGENT_THINKING_STEPS: "12",
        TEST_DELAY_CATCH_UP_MS: "1500",
      },
    });
    const token = await signToken("latecomer");
    const driver = TestClient.open(server.wsUrl);
    const { epoch } = await driver.hello(token);
    driver.send({ type: "chat", id: "during-1", text: "hello" });
    await driver.nextOf("ack");
    const started = await driver.eventsUntil((e) => e.name === "agent_thinking");

    // The run has about two seconds of steps left; the watcher's catch-up read waits 1.5 s
    // after it subscribed, so live events reach it before its ready.
    const watcher = TestClient.open(server.wsUrl);
    await watcher.opened;
    // Resuming from 0: the whole log is the watcher's, whether or not the run is still going.
    watcher.send({ type: "hello", token, resume: { epoch, after: 0 } });
    const rest = await driver.eventsUntil((e) => e.name === "agent_completed", 20_000);
    const all: EventFrame[] = [...started, ...rest];

    assert.equal((await watcher.nextReady()).resumed, true);
    const seen = (await watcher.sync()).filter((f) => f.type === "event");
    // An event sent before ready was refused (and counted) by the server: it names that race.
    await server.assertNoRaces();
    assertSeqs(seen, seqRange(1, all.at(-1)!.seq), "the watcher");
    await driver.close();
    await watcher.close();
  },
  {
    proves: [
      { guards: ["hold_events_until_ready"], race: "event_before_ready" },
      { guards: ["dedupe_by_seq"], race: "duplicate_seq" },
    ],
  },
);
