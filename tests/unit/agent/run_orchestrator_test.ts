import assert from "node:assert/strict";
import type { Agent, AgentInput, AgentStep } from "../../../src/agent/agent.ts";
import { DemoAgent } from "../../../src/agent/demo_agent.ts";
import { RunOrchestrator } from "../../../src/agent/run_orchestrator.ts";
import { MemoryEngine } from "../../../src/bus/memory_engine.ts";
import type { EventEngine, UserEvent } from "../../../src/bus/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { MemoryStore } from "../../../src/store/mod.ts";
import type { ChatStore } from "../../../src/store/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

const alice = { userId: "alice", exp: 4_000_000_000 };

/** An agent that waits at a hold before each step after the first tool call. */
class ScriptedAgent implements Agent {
  readonly holds: PromiseWithResolvers<void>[] = [];
  readonly reached = Promise.withResolvers<void>();
  async *run(_input: AgentInput, options: { signal: AbortSignal }): AsyncIterable<AgentStep> {
    yield { kind: "thinking", text: "hmm" };
    yield { kind: "tool_call", toolCallId: "t1", tool: "search", input: { q: "x" } };
    const hold = Promise.withResolvers<void>();
    this.holds.push(hold);
    this.reached.resolve();
    if (options.signal.aborted) hold.reject(options.signal.reason);
    options.signal.addEventListener("abort", () => hold.reject(options.signal.reason), {
      once: true,
    });
    await hold.promise;
    yield { kind: "tool_result", toolCallId: "t1", output: { hits: 1 } };
    yield { kind: "reply", text: "done" };
  }
}

function setup(
  options: { agent?: Agent; store?: ChatStore; engine?: EventEngine; instanceId?: string } = {},
) {
  const clock = new ManualClock(Date.now());
  const store = options.store ?? new MemoryStore({ clock });
  const engine = options.engine ??
    new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const orchestrator = new RunOrchestrator({
    store,
    engine,
    agent: options.agent ?? new DemoAgent({ clock, stepDelayMs: 0 }),
    clock,
    log: silentLogger,
    instanceId: options.instanceId ?? "i1",
    leaseMs: 1000,
  });
  const events: UserEvent[] = [];
  return { clock, store, engine, orchestrator, events };
}

async function record(engine: EventEngine, events: UserEvent[]) {
  return await engine.subscribe("alice", (event) => events.push(event));
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(condition(), "condition not met");
}

Deno.test("RunOrchestrator.startChat() acks only once stored, then publishes the run in order", async () => {
  const { store, engine, orchestrator, events } = setup();
  await record(engine, events);
  const outcome = await orchestrator.startChat(alice, {
    type: "chat",
    id: "c1",
    text: "what is 2+3*4",
  });
  assert.ok(outcome.ok);
  const run = await store.getRun("alice", outcome.ack.runId);
  assert.equal(run?.status, "running", "stored before the ack");
  await until(() => events.some((e) => e.name === "agent_completed"));
  assert.deepEqual(events.map((e) => e.name), [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  const done = await store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([done?.status, done?.startSeq, done?.endSeq], ["completed", 1, 5]);
  await orchestrator.stop();
});

Deno.test("RunOrchestrator.cancel() closes the open tool call first, then ends the run cancelled", async () => {
  const agent = new ScriptedAgent();
  const { store, engine, orchestrator, events } = setup({ agent });
  await record(engine, events);
  const outcome = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "search" });
  assert.ok(outcome.ok);
  await agent.reached.promise;
  assert.deepEqual(await orchestrator.cancel(alice, outcome.ack.runId), { ok: true });
  await until(() => events.some((e) => e.name === "agent_cancelled"));
  assert.deepEqual(events.map((e) => e.name), [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_cancelled",
  ]);
  assert.deepEqual(events[3].data, {
    toolCallId: "t1",
    tool: "search",
    error: { code: "cancelled", message: "The run was cancelled" },
  });
  assert.equal((await store.getRun("alice", outcome.ack.runId))?.status, "cancelled");
  const again = await orchestrator.cancel(alice, outcome.ack.runId);
  assert.deepEqual(again.ok ? "" : again.code, "run_finished");
  // Another user's run is not_found, exactly as one that does not exist: never run_finished.
  const foreign = await orchestrator.cancel({ ...alice, userId: "bob" }, outcome.ack.runId);
  assert.equal(foreign.ok ? "ok" : foreign.code, "not_found");
  await orchestrator.stop();
});

Deno.test("RunOrchestrator refuses a second chat on a busy thread and repeats an id's ack", async () => {
  const agent = new ScriptedAgent();
  const { orchestrator } = setup({ agent });
  const first = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "one" });
  assert.ok(first.ok);
  const busy = await orchestrator.startChat(alice, {
    type: "chat",
    id: "c2",
    text: "two",
    threadId: first.ack.threadId,
  });
  assert.equal(busy.ok ? "" : busy.code, "thread_busy");
  const repeat = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "one" });
  assert.deepEqual(repeat.ok && repeat.ack, { ...first.ack, duplicate: true, status: "running" });
  const conflict = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "other" });
  assert.equal(conflict.ok ? "" : conflict.code, "idempotency_conflict");
  await orchestrator.stop();
});

Deno.test("RunOrchestrator.startChat() stores nothing and answers unavailable when the engine is down", async () => {
  const clock = new ManualClock(Date.now());
  const engine = new MemoryEngine({ clock, retention: { count: 100, seconds: 60 } });
  await engine.close(); // every call now fails as an unreachable engine would
  const { store, orchestrator } = setup({ engine });
  const outcome = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "hi" });
  assert.equal(outcome.ok ? "" : outcome.code, "unavailable");
  assert.deepEqual((await store.listThreads("alice", { limit: 10 })).items, [], "nothing stored");
  await orchestrator.stop();
});

Deno.test("RunOrchestrator.drain() ends a run still going at the timeout with agent_failed shutdown", async () => {
  const agent = new ScriptedAgent();
  const { store, engine, orchestrator, events, clock } = setup({ agent });
  await record(engine, events);
  const outcome = await orchestrator.startChat(alice, { type: "chat", id: "c1", text: "slow" });
  assert.ok(outcome.ok);
  await agent.reached.promise;
  const drained = orchestrator.drain(500);
  clock.advance(500);
  await drained;
  assert.deepEqual(events.slice(-2).map((e) => e.name), ["tool_completed", "agent_failed"]);
  assert.deepEqual(events.at(-1)?.data, {
    error: { code: "shutdown", message: "The server shut down before the run finished" },
  });
  const run = await store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([run?.status, run?.error?.code], ["failed", "shutdown"]);
  const after = await orchestrator.startChat(alice, { type: "chat", id: "c9", text: "late" });
  assert.equal(after.ok ? "" : after.code, "draining");
  await orchestrator.stop();
});

Deno.test("RunOrchestrator reaps a run whose owner stopped renewing its lease, exactly once", async () => {
  const agent = new ScriptedAgent();
  const clock = new ManualClock(Date.now());
  const store = new MemoryStore({ clock });
  const engine = new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const events: UserEvent[] = [];
  await record(engine, events);
  // The owner starts a run and then goes silent (it is never started, so it renews nothing).
  const owner = new RunOrchestrator({
    store,
    engine,
    agent,
    clock,
    log: silentLogger,
    instanceId: "dead",
    leaseMs: 1000,
  });
  const outcome = await owner.startChat(alice, { type: "chat", id: "c1", text: "x" });
  assert.ok(outcome.ok);
  await agent.reached.promise;
  const survivors = ["s1", "s2"].map((instanceId) =>
    new RunOrchestrator({
      store,
      engine,
      agent: new DemoAgent({ clock, stepDelayMs: 0 }),
      clock,
      log: silentLogger,
      instanceId,
      leaseMs: 1000,
    })
  );
  for (const s of survivors) s.start();
  for (let i = 0; i < 6; i++) {
    clock.advance(500);
    await new Promise((r) => setTimeout(r, 0));
  }
  await until(() => events.some((e) => e.name === "agent_failed"));
  const terminal = events.filter((e) =>
    e.runId === outcome.ack.runId && e.name.startsWith("agent_") &&
    !["agent_started", "agent_thinking"].includes(e.name)
  );
  assert.deepEqual(terminal.map((e) => e.name), ["agent_failed"]);
  assert.equal((terminal[0].data.error as { code: string }).code, "interrupted");
  const closed = events.filter((e) => e.name === "tool_completed");
  assert.equal(closed.length, 1, "the open tool call was closed by the reaper");
  // The owner wakes up: its late end is refused, nothing is published twice.
  agent.holds[0].resolve();
  await owner.stop();
  assert.equal(
    events.filter((e) => e.runId === outcome.ack.runId && e.name === "agent_completed").length,
    0,
  );
  for (const s of survivors) await s.stop();
});
