/**
 * Tool approval end to end, on two instances sharing PostgreSQL and Redis: the first decision
 * wins wherever it comes from (a user's answer on either instance, or the timeout), it is
 * recorded once in the user's log, a pending request survives a reconnect to the other
 * instance and a drain, and a bad `TOOLS_REQUIRE_APPROVAL` stops the start.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { ErrorFrame, EventFrame } from "../../src/protocol/mod.ts";
import { createServiceEnv } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);

async function connect(server: ServerProcess, userId = "alice"): Promise<TestClient> {
  const client = TestClient.open(server.wsUrl);
  await client.hello(await server.devToken(userId));
  return client;
}

/** Frames of `client` after index `from` that match. */
function after<T>(client: TestClient, from: number, pick: (frame: unknown) => T | undefined): T[] {
  return client.frames.slice(from).map(pick).filter((x): x is T => x !== undefined);
}

const eventNamed = (name: string, runId: string) => (frame: unknown) => {
  const event = frame as EventFrame;
  return event.type === "event" && event.name === name && event.runId === runId ? event : undefined;
};

Deno.test("approval: two instances answer at the same moment, 200 rounds, one winner each, timeouts included", async () => {
  await using services = await createServiceEnv();
  const env = {
    ...services.env,
    TOOLS_REQUIRE_APPROVAL: "echo",
    TOOL_APPROVAL_TIMEOUT_MS: "1000",
    MAX_ACTIVE_RUNS_PER_USER: "0",
  };
  await using a = await startServer({ env });
  await using b = await startServer({ env });
  const onA = await connect(a);
  const onB = await connect(b);
  const winners = new Map<string, number>();
  for (let round = 0; round < 200; round++) {
    const timeoutRound = round % 10 === 9;
    const markA = onA.frames.length;
    const markB = onB.frames.length;
    onA.send({ type: "chat", id: `r${round}`, text: `hello ${round}` });
    const ack = await onA.nextOf("ack");
    const requestA = (await onA.eventsUntil((e) => e.name === "tool_approval_requested")).at(-1)!;
    const [requestB] = (await onB.eventsUntil((e) => e.name === "tool_approval_requested")).slice(
      -1,
    );
    assert.equal(requestA.seq, requestB.seq, `round ${round}: both instances show the one request`);
    const toolCallId = String(requestA.data.toolCallId);
    if (timeoutRound) {
      // Answer the moment the request expires, racing the server's own timeout.
      const wait = Date.parse(String(requestA.data.expiresAt)) - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const answer = (approved: boolean) => ({
      type: "approve",
      runId: ack.runId,
      toolCallId,
      approved,
      ...(approved ? {} : { reason: `no from B in round ${round}` }),
    });
    // A approves and B denies, sent back to back in alternating order.
    if (round % 2 === 0) {
      onA.send(answer(true));
      onB.send(answer(false));
    } else {
      onB.send(answer(false));
      onA.send(answer(true));
    }
    await onA.eventsUntil((e) => e.runId === ack.runId && TERMINAL.has(e.name));
    await onB.eventsUntil((e) => e.runId === ack.runId && TERMINAL.has(e.name));
    // Both sides sync so every error answer has arrived.
    onA.send({ type: "ping" });
    onB.send({ type: "ping" });
    await onA.nextOf("pong");
    await onB.nextOf("pong");

    for (const client of [onA, onB]) {
      const resolved = after(
        client,
        client === onA ? markA : markB,
        eventNamed("tool_approval_resolved", ack.runId),
      );
      assert.equal(resolved.length, 1, `round ${round}: exactly one decision`);
    }
    const resolved = after(onA, markA, eventNamed("tool_approval_resolved", ack.runId))[0];
    const winner = resolved.data.by === "timeout" ? "timeout" : resolved.data.approved ? "A" : "B";
    winners.set(winner, (winners.get(winner) ?? 0) + 1);
    const errors = (client: TestClient, mark: number) =>
      after(client, mark, (frame) => {
        const error = frame as ErrorFrame;
        return error.type === "error" && error.ref === toolCallId ? error.code : undefined;
      });
    // A loser is told `already_resolved`, or `run_finished` when the run ended before its
    // answer was read (the echo runs at once); a winner is told nothing.
    const loser = (codes: string[]) =>
      codes.length === 1 && ["already_resolved", "run_finished"].includes(codes[0]);
    const [errorsA, errorsB] = [errors(onA, markA), errors(onB, markB)];
    assert.ok(
      winner === "A" ? errorsA.length === 0 : loser(errorsA),
      `round ${round} on A: ${errorsA}`,
    );
    assert.ok(
      winner === "B" ? errorsB.length === 0 : loser(errorsB),
      `round ${round} on B: ${errorsB}`,
    );
    const executed = after(onA, markA, eventNamed("tool_executing", ack.runId)).length;
    assert.equal(executed, winner === "A" ? 1 : 0, `round ${round}: the tool ran only if approved`);
  }
  assert.ok(
    (winners.get("A") ?? 0) > 0 && (winners.get("B") ?? 0) > 0,
    JSON.stringify([...winners]),
  );
  assert.ok(
    (winners.get("timeout") ?? 0) + (winners.get("A") ?? 0) + (winners.get("B") ?? 0) === 200,
  );
  await onA.close();
  await onB.close();
});

Deno.test("approval: a pending request is seen again after a reconnect to the other instance, and answered there", async () => {
  await using services = await createServiceEnv();
  const env = { ...services.env, TOOLS_REQUIRE_APPROVAL: "calculator" };
  await using a = await startServer({ env });
  await using b = await startServer({ env });
  const first = await connect(a);
  first.send({ type: "chat", id: "c1", text: "what is 6*7" });
  const ack = await first.nextOf("ack");
  const [request] = (await first.eventsUntil((e) => e.name === "tool_approval_requested")).slice(
    -1,
  );
  await first.close();

  const second = TestClient.open(b.wsUrl);
  const ready = await second.hello(await b.devToken("alice"));
  assert.deepEqual(ready.activeRuns.map((run) => run.runId), [ack.runId]);
  const replay = await second.eventsUntil((e) => e.name === "tool_approval_requested");
  assert.equal(replay[0].name, "agent_started", "replayed from the run's start");
  assert.equal(replay.at(-1)!.seq, request.seq);
  second.send({
    type: "approve",
    runId: ack.runId,
    toolCallId: request.data.toolCallId,
    approved: true,
  });
  const rest = await second.eventsUntil((e) => TERMINAL.has(e.name));
  assert.deepEqual(rest.map((e) => e.name), [
    "tool_approval_resolved",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  assert.equal(rest.at(-1)!.data.text, "6*7 = 42");
  await second.close();
});

Deno.test("approval: a draining instance's pending request stays answerable from the other until the drain timeout", async () => {
  await using services = await createServiceEnv();
  const env = {
    ...services.env,
    TOOLS_REQUIRE_APPROVAL: "calculator",
    DRAIN_TIMEOUT_MS: "20000",
    DRAIN_SPREAD_MS: "0",
  };
  const draining = await startServer({ env });
  await using other = await startServer({ env });
  const first = await connect(draining);
  first.send({ type: "chat", id: "c1", text: "what is 2+2" });
  const ack = await first.nextOf("ack");
  const [request] = (await first.eventsUntil((e) => e.name === "tool_approval_requested")).slice(
    -1,
  );
  const exited = draining.stop("SIGTERM");
  assert.equal((await first.waitClosed()).code, 1012);
  const second = TestClient.open(other.wsUrl);
  await second.hello(await other.devToken("alice"), {
    epoch: (first.frames[0] as { epoch: string }).epoch,
    after: request.seq,
  });
  second.send({
    type: "approve",
    runId: ack.runId,
    toolCallId: request.data.toolCallId,
    approved: true,
  });
  const rest = await second.eventsUntil((e) => TERMINAL.has(e.name), 15_000);
  assert.equal(rest.at(-1)!.name, "agent_completed");
  assert.equal(rest.at(-1)!.data.text, "2+2 = 4");
  assert.equal((await exited).code, 0, "the drained instance exits 0 once its run ended");
  await second.close();
});

Deno.test("approval: TOOLS_REQUIRE_APPROVAL naming no tool stops the start with one line", async () => {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname],
    env: { TOOLS_REQUIRE_APPROVAL: "calculator,refund_order", PORT: "0", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stderr } = await command.output();
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assert.equal(code, 1);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(lines[0], /^Invalid configuration: TOOLS_REQUIRE_APPROVAL .*"refund_order"/);
});
