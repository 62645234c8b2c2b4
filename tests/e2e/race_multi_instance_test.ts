/**
 * Race suite 8 — multi-instance: two server processes share PostgreSQL and Redis. A user is
 * connected to both; a chat on A's connection reaches B's with the same seqs; after a cut on A
 * the client resumes on B and gets the rest of the run, no gap, no duplicate — with B's
 * catch-up read stretched, so a handler that does not merge by seq doubles events: the naive
 * run must fail on `duplicate_seq`.
 */
import assert from "node:assert/strict";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest(
  "race suite 8: two instances behave as one; resume on B after a cut on A",
  async ({ start }) => {
    const pacing = { AGENT_STEP_DELAY_MS: "100", AGENT_THINKING_STEPS: "12" };
    const a = await start({ env: pacing });
    const b = await start({ env: { ...pacing, TEST_DELAY_CATCH_UP_MS: "600" } });
    const token = await signToken("roamer");
    const onA = TestClient.open(a.wsUrl);
    const onB = TestClient.open(b.wsUrl);
    const ready = await onA.hello(token);
    await onB.hello(token);

    onA.send({ type: "chat", id: "roam-1", text: "hello" });
    await onA.nextOf("ack");
    const beforeCut = await onA.eventsUntil((e) => e.seq === 4);
    await onA.close(); // cut on A, mid-run

    const resumedOnB = TestClient.open(b.wsUrl);
    const resumed = await resumedOnB.hello(token, { epoch: ready.epoch, after: 4 });
    assert.equal(resumed.resumed, true);
    const rest = await resumedOnB.eventsUntil((e) => e.name === "agent_completed");
    const whole = [...beforeCut, ...rest];
    assertSeqs(whole, seqRange(1, rest.at(-1)!.seq), "the client resumed on B");

    // B's long-lived connection saw the same run with the same seqs.
    const onBEvents = await onB.eventsUntil((e) => e.name === "agent_completed");
    assert.deepEqual(onBEvents.map((e) => [e.seq, e.name]), whole.map((e) => [e.seq, e.name]));
    await onB.close();
    await resumedOnB.close();
  },
  { proves: [{ guards: ["dedupe_by_seq"], race: "duplicate_seq" }] },
);
