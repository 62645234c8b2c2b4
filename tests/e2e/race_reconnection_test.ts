/**
 * Race suite 7 — reconnection recovery. The socket is cut mid-run, on the client side and on
 * the server side (the process killed and restarted); the client resumes with `{epoch, after}`
 * and receives the rest of the run with no gap and no duplicate, and a resent chat `id` starts
 * no second run. The catch-up read is stretched so that events arrive both live and in the
 * replay: a handler that does not merge by seq delivers them twice, and its naive run must fail
 * on `duplicate_seq`.
 */
import assert from "node:assert/strict";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest(
  "race suite 7a: a client-side cut mid-run, then resume: the rest, once",
  async ({ start }) => {
    const server = await start({
      env: {
        AGENT_STEP_DELAY_MS: "100",
        AGENT_THINKING_STEPS: "10",
        TEST_DELAY_CATCH_UP_MS: "600",
      },
    });
    const token = await signToken("cutter");
    const first = TestClient.open(server.wsUrl);
    const ready = await first.hello(token);
    first.send({ type: "chat", id: "cut-1", text: "hello" });
    const ack = await first.nextOf("ack");
    const before = await first.eventsUntil((e) => e.seq === 3);
    await first.close(); // the cut: the run goes on without a listener

    const second = TestClient.open(server.wsUrl);
    const resumed = await second.hello(token, { epoch: ready.epoch, after: 3 });
    assert.equal(resumed.resumed, true);
    const after = await second.eventsUntil((e) => e.name === "agent_completed");
    assertSeqs([...before, ...after], seqRange(1, after.at(-1)!.seq), "the resumed client");
    assert.equal(after.filter((e) => e.name === "agent_completed").length, 1);

    // The client did not see an ack it was waiting for? It resends: the same run, not a second.
    second.send({ type: "chat", id: "cut-1", text: "hello" });
    const again = await second.nextOf("ack");
    assert.deepEqual([again.runId, again.duplicate], [ack.runId, true]);
    await second.close();
  },
  { proves: [{ guards: ["dedupe_by_seq"], race: "duplicate_seq" }] },
);

raceTest(
  "race suite 7b: the server process is killed mid-run and restarted: the rest, once",
  async ({ start }) => {
    const env = { AGENT_STEP_DELAY_MS: "200", AGENT_THINKING_STEPS: "20", RUN_LEASE_MS: "1500" };
    const server = await start({ env });
    const token = await signToken("phoenix");
    const client = TestClient.open(server.wsUrl);
    const ready = await client.hello(token);
    client.send({ type: "chat", id: "phx-1", text: "hello" });
    const ack = await client.nextOf("ack");
    const before = await client.eventsUntil((e) => e.seq === 3);
    await server.stop("SIGKILL");
    await client.waitClosed();

    const restarted = await start({ env, port: server.port });
    const again = TestClient.open(restarted.wsUrl);
    const resumed = await again.hello(token, { epoch: ready.epoch, after: before.at(-1)!.seq });
    assert.equal(resumed.resumed, true, "the log lives in Redis: same epoch");
    // The dead instance's run is ended by the new one once its lease lapses.
    const after = await again.eventsUntil((e) => e.name === "agent_failed", 15_000);
    assertSeqs([...before, ...after], seqRange(1, after.at(-1)!.seq), "the resumed client");
    assert.equal((after.at(-1)!.data.error as { code: string }).code, "interrupted");
    again.send({ type: "chat", id: "phx-1", text: "hello" });
    const duplicate = await again.nextOf("ack");
    assert.deepEqual([duplicate.runId, duplicate.duplicate, duplicate.status], [
      ack.runId,
      true,
      "failed",
    ]);
    await again.close();
  },
);
