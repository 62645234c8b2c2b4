/**
 * SPEC §6 drain with the memory engine: on SIGTERM the instance reports draining, closes new
 * upgrades with 1012, refuses chats with `draining`, keeps each socket open until its user's
 * runs end, ends runs still going at the drain timeout with `agent_failed` (`shutdown`), and
 * exits 0. Each instance is checked for races up to its exit.
 */
import assert from "node:assert/strict";
import { RaceObserved } from "../_helpers/race_observed.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

async function waitDraining(server: ServerProcess): Promise<void> {
  await server.waitFor("/health/ready", 503);
  const body = await (await fetch(`${server.url}/health/ready`)).json();
  assert.equal(body.status, "draining");
}

Deno.test("drain (memory engine): runs finish, their sockets close 1012 after, the process exits 0", async () => {
  await using server = await startServer({
    env: { AGENT_STEP_DELAY_MS: "150", DRAIN_TIMEOUT_MS: "20000", DRAIN_SPREAD_MS: "50" },
  });
  const busy = TestClient.open(server.wsUrl);
  await busy.hello(await server.devToken("busy"));
  const idle = TestClient.open(server.wsUrl);
  await idle.hello(await server.devToken("idle"));
  busy.send({ type: "chat", id: "long", text: "hello" });
  await busy.nextOf("ack");
  await busy.nextOf("event"); // agent_started: the run is in flight

  const signalled = server.stop("SIGTERM");
  await waitDraining(server);

  // The idle user's socket closes with 1012 at once; a new upgrade is accepted, then closed 1012.
  assert.equal((await idle.waitClosed()).code, 1012);
  const late = TestClient.open(server.wsUrl);
  assert.equal((await server.unlessRace(late.waitClosed())).code, 1012);
  await late.opened; // accepted first, so that it could see the code

  // The busy user keeps its socket until its run ends; a new chat there is refused.
  busy.send({ type: "chat", id: "another", text: "hi", threadId: "whatever" });
  const refused = await busy.nextOf("error");
  assert.deepEqual([refused.code, refused.ref], ["draining", "another"]);
  const events = await busy.eventsUntil((e) => e.name === "agent_completed");
  assert.equal(events.at(-1)?.name, "agent_completed");
  assert.equal((await busy.waitClosed()).code, 1012);

  const status = await signalled;
  assert.equal(status.code, 0, server.logs());
  await server.assertNoRaces();
});

Deno.test("drain (memory engine): a run still going at the drain timeout ends agent_failed shutdown", async () => {
  await using server = await startServer({
    env: { AGENT_STEP_DELAY_MS: "60000", DRAIN_TIMEOUT_MS: "300", DRAIN_SPREAD_MS: "0" },
  });
  const client = TestClient.open(server.wsUrl);
  await client.hello(await server.devToken("slow"));
  client.send({ type: "chat", id: "forever", text: "hello" });
  await client.nextOf("ack");
  await client.nextOf("event");
  const signalled = server.stop("SIGTERM");
  const events = await client.eventsUntil((e) =>
    e.name.startsWith("agent_") && e.name !== "agent_started" && e.name !== "agent_thinking"
  );
  const last = events.at(-1)!;
  assert.equal(last.name, "agent_failed");
  assert.equal((last.data.error as { code: string }).code, "shutdown");
  assert.equal((await client.waitClosed()).code, 1012);
  assert.equal((await signalled).code, 0, server.logs());
  await server.assertNoRaces();
});

Deno.test("drain: a second signal exits at once, without waiting for runs", async () => {
  await using server = await startServer({
    env: { AGENT_STEP_DELAY_MS: "60000", DRAIN_TIMEOUT_MS: "60000" },
  });
  const client = TestClient.open(server.wsUrl);
  await client.hello(await server.devToken("impatient"));
  client.send({ type: "chat", id: "wait", text: "hello" });
  await client.nextOf("ack");
  const first = server.stop("SIGTERM");
  await waitDraining(server);
  const second = await server.stop("SIGINT");
  assert.equal(second.code, 1);
  assert.equal((await first).code, 1);
  await client.waitClosed();
  await server.assertNoRaces();
});

Deno.test("drain: the draining instance is checked for races up to its exit", async () => {
  // With wait_for_open switched off, an upgrade refused while draining is closed before it
  // opened: a race on the draining instance, which the check after its exit must name.
  await using server = await startServer({
    env: {
      TEST_UNSAFE_GUARDS_OFF: "wait_for_open",
      AGENT_STEP_DELAY_MS: "150",
      DRAIN_TIMEOUT_MS: "20000",
      DRAIN_SPREAD_MS: "0",
    },
  });
  const busy = TestClient.open(server.wsUrl);
  await busy.hello(await server.devToken("busy"));
  busy.send({ type: "chat", id: "long", text: "hello" });
  await busy.nextOf("ack");
  await busy.nextOf("event");
  const signalled = server.stop("SIGTERM");
  await waitDraining(server);
  const late = TestClient.open(server.wsUrl); // refused: closed before it opened
  await busy.eventsUntil((e) => e.name === "agent_completed");
  assert.equal((await signalled).code, 0, server.logs());
  await late.waitClosed(); // at the latest when the process is gone
  await assert.rejects(
    server.assertNoRaces(),
    (error) => error instanceof RaceObserved && error.kind === "send_not_open",
  );
});
