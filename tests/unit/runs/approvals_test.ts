import assert from "node:assert/strict";
import { createDemoTools, DemoAgent } from "../../../src/agent/mod.ts";
import { MemoryEngine } from "../../../src/bus/mod.ts";
import type { UserEvent } from "../../../src/bus/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { RunOrchestrator } from "../../../src/runs/mod.ts";
import { MemoryStore } from "../../../src/store/mod.ts";
import { ToolRegistry } from "../../../src/tools/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { alice, ScriptedAgent, setup, until } from "./_runs_harness.ts";

const chat = (id: string, text: string) => ({ type: "chat", id, text }) as const;
const approve = (runId: string, toolCallId: string, approved: boolean, reason?: string) =>
  ({ type: "approve", runId, toolCallId, approved, ...(reason ? { reason } : {}) }) as const;

/** The demo agent with its calculator behind approval. */
async function demoWithApproval(options: { approvalTimeoutMs?: number } = {}) {
  const clock = new ManualClock(Date.now());
  return await setup({
    clock,
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    tools: new ToolRegistry(createDemoTools({ clock }), { requireApproval: ["calculator"] }),
    approvalTimeoutMs: options.approvalTimeoutMs ?? 60_000,
  });
}

Deno.test("RunOrchestrator: an approved call runs after tool_approval_resolved", async () => {
  const h = await demoWithApproval();
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 6*7"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested"));
  const requested = h.events.find((e) => e.name === "tool_approval_requested")!;
  assert.deepEqual(requested.data.input, { expression: "6*7" });
  assert.equal(
    Date.parse(String(requested.data.expiresAt)),
    h.clock.now() + 60_000,
    "expiresAt from the engine's clock",
  );
  const toolCallId = String(requested.data.toolCallId);
  assert.deepEqual(
    await h.orchestrator.approve(alice, approve(outcome.ack.runId, toolCallId, true)),
    { ok: true },
  );
  await until(() => h.names().includes("agent_completed"));
  assert.deepEqual(h.names(), [
    "agent_started",
    "agent_thinking",
    "tool_approval_requested",
    "tool_approval_resolved",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  const resolved = h.events[3].data;
  assert.deepEqual(resolved, { toolCallId, tool: "calculator", approved: true, by: "user" });
  assert.equal(h.events.at(-1)?.data.text, "6*7 = 42");
  // A resend of the winning answer (after a reconnect) is no error; the run has ended now.
  const late = await h.orchestrator.approve(alice, approve(outcome.ack.runId, toolCallId, true));
  assert.equal(late.ok ? "ok" : late.code, "run_finished");
  await h.dispose();
});

Deno.test("RunOrchestrator: a denied call completes denied with the reason, never executing", async () => {
  const agent = new ScriptedAgent();
  const clock = new ManualClock(Date.now());
  const h = await setup({
    clock,
    agent,
    tools: new ToolRegistry(createDemoTools({ clock }), { requireApproval: ["echo"] }),
  });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "x"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  const result = agent.call("echo", { text: "rm -rf" });
  await until(() => h.names().includes("tool_approval_requested"));
  const toolCallId = String(h.events.at(-1)!.data.toolCallId);
  const runId = outcome.ack.runId;
  assert.deepEqual(
    await h.orchestrator.approve(alice, approve(runId, toolCallId, false, "too risky")),
    { ok: true },
  );
  const denied = await result;
  assert.deepEqual(denied.ok ? null : denied.error, {
    code: "denied",
    message: "Denied: too risky",
  });
  assert.match(denied.text, /too risky/, "the reason goes to the model");
  const again = await h.orchestrator.approve(alice, approve(runId, toolCallId, false, "still no"));
  assert.deepEqual(again, { ok: true }, "a repeat of the winning answer is no error");
  const changed = await h.orchestrator.approve(alice, approve(runId, toolCallId, true));
  assert.equal(changed.ok ? "ok" : changed.code, "already_resolved");
  const unknown = await h.orchestrator.approve(alice, approve(runId, "tc_nope", true));
  assert.equal(unknown.ok ? "ok" : unknown.code, "not_found");
  const foreign = await h.orchestrator.approve(
    { ...alice, userId: "bob" },
    approve(runId, toolCallId, true),
  );
  assert.equal(foreign.ok ? "ok" : foreign.code, "not_found");
  agent.next({ kind: "reply", text: "I will not." });
  agent.end();
  await until(() => h.names().includes("agent_completed"));
  assert.equal(h.names().includes("tool_executing"), false);
  await h.dispose();
});

Deno.test("RunOrchestrator: nobody answering in time resolves the approval by timeout", async () => {
  const h = await demoWithApproval({ approvalTimeoutMs: 5_000 });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 1+1"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested") && h.clock.pending > 2);
  h.clock.advance(4_999);
  await until(() => true);
  assert.equal(h.names().includes("tool_approval_resolved"), false, "not before expiresAt");
  h.clock.advance(1);
  await until(() => h.names().includes("agent_completed"));
  const resolved = h.events.find((e) => e.name === "tool_approval_resolved")!;
  assert.deepEqual([resolved.data.approved, resolved.data.by], [false, "timeout"]);
  const completed = h.events.find((e) => e.name === "tool_completed")!;
  assert.equal((completed.data.error as { code: string }).code, "approval_timeout");
  assert.match(String(h.events.at(-1)?.data.text), /could not use the calculator/);
  await h.dispose();
});

Deno.test("RunOrchestrator: cancel while waiting resolves the approval by cancelled, then ends the run", async () => {
  const h = await demoWithApproval();
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 2*2"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested"));
  assert.deepEqual(await h.orchestrator.cancel(alice, outcome.ack.runId), { ok: true });
  await until(() => h.names().includes("agent_cancelled"));
  assert.deepEqual(h.names().slice(-3), [
    "tool_approval_resolved",
    "tool_completed",
    "agent_cancelled",
  ]);
  assert.deepEqual(
    [h.events.at(-3)!.data.by, (h.events.at(-2)!.data.error as { code: string }).code],
    ["cancelled", "cancelled"],
  );
  await h.dispose();
});

Deno.test("RunOrchestrator: the drain timeout resolves a pending approval by shutdown", async () => {
  const h = await demoWithApproval();
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 3*3"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested"));
  const drained = h.orchestrator.drain(1_000);
  h.clock.advance(1_000);
  await drained;
  assert.deepEqual(h.names().slice(-3), [
    "tool_approval_resolved",
    "tool_completed",
    "agent_failed",
  ]);
  assert.equal(h.events.at(-3)!.data.by, "shutdown");
  await h.dispose();
});

Deno.test("RunOrchestrator: an answer given through another instance reaches the run waiting here", async () => {
  const h = await demoWithApproval();
  const other = new RunOrchestrator({
    store: h.store,
    engine: h.engine,
    agent: new DemoAgent({ clock: h.clock, stepDelayMs: 0 }),
    tools: new ToolRegistry([]),
    clock: h.clock,
    log: silentLogger,
    instanceId: "i2",
  });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 5*5"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested"));
  const toolCallId = String(h.events.at(-1)!.data.toolCallId);
  assert.deepEqual(
    await other.approve(alice, approve(outcome.ack.runId, toolCallId, true)),
    { ok: true },
  );
  await until(() => h.names().includes("agent_completed"));
  assert.equal(h.events.at(-1)?.data.text, "5*5 = 25");
  await other.stop();
  await h.dispose();
});

Deno.test("RunOrchestrator reaps an orphan waiting for approval: resolved interrupted, then ended", async () => {
  const clock = new ManualClock(Date.now());
  const store = new MemoryStore({ clock });
  const engine = new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const events: UserEvent[] = [];
  await engine.subscribe("alice", (event) => events.push(event));
  const tools = () =>
    new ToolRegistry(createDemoTools({ clock }), { requireApproval: ["calculator"] });
  const owner = new RunOrchestrator({
    store,
    engine,
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    tools: tools(),
    clock,
    log: silentLogger,
    instanceId: "dead",
    leaseMs: 1000,
  });
  const outcome = await owner.startChat(alice, chat("c1", "what is 7*7"));
  assert.ok(outcome.ok);
  await until(() => events.some((e) => e.name === "tool_approval_requested"));
  const survivor = new RunOrchestrator({
    store,
    engine,
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    tools: tools(),
    clock,
    log: silentLogger,
    instanceId: "alive",
    leaseMs: 1000,
  });
  survivor.start();
  for (let i = 0; i < 6 && !events.some((e) => e.name === "agent_failed"); i++) {
    clock.advance(500);
    await until(() => true);
  }
  await until(() => events.some((e) => e.name === "agent_failed"));
  // The owner here is only silent, not dead: it sees the decision too and closes its call.
  const resolved = events.filter((e) => e.name === "tool_approval_resolved");
  assert.deepEqual(resolved.map((e) => e.data.by), ["interrupted"], "decided once, by the reaper");
  assert.equal(events.at(-1)!.name, "agent_failed");
  assert.equal((events.at(-1)!.data.error as { code: string }).code, "interrupted");
  assert.ok(
    events.indexOf(resolved[0]) < events.findIndex((e) => e.name === "tool_completed"),
    "resolved before its call completes",
  );
  await survivor.stop();
  await owner.stop();
});

Deno.test("RunOrchestrator.deleteThread() cancels the run in flight, deletes the thread and purges its events", async () => {
  const h = await demoWithApproval();
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 8*8"));
  assert.ok(outcome.ok);
  await until(() => h.names().includes("tool_approval_requested"));
  assert.equal(await h.orchestrator.deleteThread("alice", outcome.ack.threadId), true);
  assert.ok(h.names().includes("agent_cancelled"), "the run ended before the delete");
  assert.equal(await h.store.getRun("alice", outcome.ack.runId), null);
  const range = await h.engine.readAfter("alice", 0);
  assert.deepEqual(range.events, [], "never replayed again");
  assert.equal(range.complete, true);
  assert.equal(await h.orchestrator.deleteThread("alice", outcome.ack.threadId), false);
  assert.equal(await h.orchestrator.deleteThread("bob", "nope"), false);
  await h.dispose();
});
