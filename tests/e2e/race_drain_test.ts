/**
 * Race suite 9 — drain (SPEC §6) with a shared engine, on throwaway PostgreSQL and Redis. On
 * SIGTERM an instance reports draining, closes new upgrades and open sockets with 1012 at once,
 * keeps its run publishing, and exits 0; the client resumes on the other instance and sees the
 * whole run once. A run still going at the drain timeout ends `shutdown`. An instance killed
 * outright has its run ended `interrupted` by the survivor, exactly once. Every instance is
 * checked for races: the survivor now, the drained or killed one up to its exit.
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { signToken, startThrowawayServices } from "../_helpers/race_suite.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

function assertWholeRunOnce(events: EventFrame[], terminal: string): void {
  assertSeqs(events, seqRange(1, events.at(-1)?.seq ?? 0), "the client");
  assert.equal(events[0].name, "agent_started");
  assert.equal(events.filter((e) => e.name === terminal).length, 1);
  assert.equal(events.at(-1)!.name, terminal);
}

async function draining(server: ServerProcess): Promise<void> {
  await server.waitFor("/health/ready", 503);
  assert.equal((await (await fetch(`${server.url}/health/ready`)).json()).status, "draining");
}

Deno.test("race suite 9: drain, drain timeout, and a killed instance", async (t) => {
  await using services = await startThrowawayServices();
  const pacing = { AGENT_STEP_DELAY_MS: "250", AGENT_THINKING_STEPS: "6", RUN_LEASE_MS: "1500" };

  await t.step(
    "SIGTERM mid-run: 1012 at once, the run finishes, the client resumes elsewhere",
    async () => {
      await using a = await startServer({
        env: { ...services.env, ...pacing, DRAIN_SPREAD_MS: "200" },
      });
      await using b = await startServer({ env: { ...services.env, ...pacing } });
      const token = await signToken("drainee");
      const client = TestClient.open(a.wsUrl);
      const ready = await client.hello(token);
      client.send({ type: "chat", id: "d1", text: "hello" });
      await client.nextOf("ack");
      const before = await client.eventsUntil((e) => e.name === "agent_started");
      const exited = a.stop("SIGTERM");
      await draining(a);
      assert.equal((await client.waitClosed()).code, 1012);
      const late = TestClient.open(a.wsUrl);
      assert.equal((await a.unlessRace(late.waitClosed())).code, 1012);
      await late.opened; // accepted first, so that it could see the code

      const resumed = TestClient.open(b.wsUrl);
      const last = client.frames.filter((f) => f.type === "event").at(-1) as EventFrame;
      assert.equal(
        (await resumed.hello(token, { epoch: ready.epoch, after: last.seq })).resumed,
        true,
      );
      const rest = await resumed.eventsUntil((e) => e.name === "agent_completed", 15_000);
      const seen = client.frames.filter((f) => f.type === "event") as EventFrame[];
      assertWholeRunOnce([...seen, ...rest], "agent_completed");
      assert.ok(before.length >= 1);
      assert.equal((await exited).code, 0, a.logs());
      await resumed.close();
      await a.assertNoRaces(); // up to its exit
      await b.assertNoRaces();
    },
  );

  await t.step(
    "a run still going at the drain timeout ends agent_failed shutdown, stored",
    async () => {
      const slow = { ...pacing, AGENT_STEP_DELAY_MS: "60000" };
      await using a = await startServer({
        env: { ...services.env, ...slow, DRAIN_TIMEOUT_MS: "500" },
      });
      await using b = await startServer({ env: { ...services.env, ...slow } });
      const token = await signToken("overtime");
      const onB = TestClient.open(b.wsUrl);
      await onB.hello(token);
      const onA = TestClient.open(a.wsUrl);
      await onA.hello(token);
      onA.send({ type: "chat", id: "o1", text: "hello" });
      const ack = await onA.nextOf("ack");
      const exited = a.stop("SIGTERM");
      const events = await onB.eventsUntil((e) => e.name === "agent_failed", 15_000);
      assertWholeRunOnce(events, "agent_failed");
      assert.equal((events.at(-1)!.data.error as { code: string }).code, "shutdown");
      assert.equal((await exited).code, 0, a.logs());
      onB.send({ type: "chat", id: "o1", text: "hello" });
      const stored = await onB.nextOf("ack");
      assert.deepEqual([stored.runId, stored.status], [ack.runId, "failed"]);
      await onB.close();
      await a.assertNoRaces(); // up to its exit
      await b.assertNoRaces();
    },
  );

  await t.step("SIGKILL mid-run: the survivor ends the run interrupted, exactly once", async () => {
    await using a = await startServer({ env: { ...services.env, ...pacing } });
    await using b = await startServer({ env: { ...services.env, ...pacing } });
    const token = await signToken("victim");
    const onB = TestClient.open(b.wsUrl);
    const ready = await onB.hello(token);
    const onA = TestClient.open(a.wsUrl);
    await onA.hello(token);
    onA.send({ type: "chat", id: "k1", text: "hello" });
    await onA.nextOf("ack");
    const first = await onB.eventsUntil((e) => e.name === "agent_thinking");
    await a.stop("SIGKILL");
    const rest = await onB.eventsUntil((e) => e.name === "agent_failed", 20_000);
    assertWholeRunOnce([...first, ...rest], "agent_failed");
    assert.equal((rest.at(-1)!.data.error as { code: string }).code, "interrupted");
    // Life goes on on the survivor; the log holds exactly one terminal event for the dead run.
    onB.send({ type: "chat", id: "k2", text: "still there?" });
    await onB.nextOf("ack");
    await onB.eventsUntil((e) => e.name === "agent_completed");
    const replay = TestClient.open(b.wsUrl);
    assert.equal((await replay.hello(token, { epoch: ready.epoch, after: 0 })).resumed, true);
    const log = await replay.eventsUntil((e) => e.name === "agent_completed");
    const terminals = log.filter((e) =>
      ["agent_completed", "agent_failed", "agent_cancelled"].includes(e.name)
    );
    assert.deepEqual(terminals.map((e) => e.name), ["agent_failed", "agent_completed"]);
    await replay.close();
    await onB.close();
    await a.assertNoRaces(); // up to the kill
    await b.assertNoRaces();
  });
});
