import assert from "node:assert/strict";
import { DemoAgent } from "../../../src/agent/mod.ts";
import { MemoryEngine } from "../../../src/bus/mod.ts";
import type { UserEvent } from "../../../src/bus/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { RunOrchestrator } from "../../../src/runs/mod.ts";
import { MemoryStore } from "../../../src/store/mod.ts";
import { ToolRegistry } from "../../../src/tools/mod.ts";
import { DependencyUnavailableError } from "../../../src/_util/dependency_unavailable_error.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);
import { alice, heldTool, ScriptedAgent, setup, until } from "./_runs_harness.ts";

const chat = (id: string, text: string, threadId?: string) =>
  ({ type: "chat", id, text, ...(threadId ? { threadId } : {}) }) as const;

Deno.test("RunOrchestrator.startChat() acks only once stored, then publishes the demo run in order", async () => {
  const h = await setup();
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "what is 2+3*4"));
  assert.ok(outcome.ok);
  const run = await h.store.getRun("alice", outcome.ack.runId);
  assert.equal(run?.status, "running", "stored before the ack");
  await until(() => h.names().includes("agent_completed"));
  assert.deepEqual(h.names(), [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  const executing = h.events[2].data;
  assert.equal(executing.tool, "calculator");
  assert.deepEqual(executing.input, { expression: "2+3*4" });
  assert.match(String(executing.toolCallId), /^tc_[\w-]{16}$/);
  assert.deepEqual(h.events[3].data.output, { value: "14" });
  assert.equal(h.events[4].data.text, "2+3*4 = 14");
  const done = await h.store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([done?.status, done?.startSeq, done?.endSeq], ["completed", 1, 5]);
  await h.dispose();
});

Deno.test("RunOrchestrator streams pieces: the first at once, the rest coalesced, and the terminal text is their concatenation", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "hi"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "model_call" });
  agent.next({ kind: "text", text: "Hel" });
  await until(() => h.names().includes("agent_delta"), "first piece published at once");
  assert.deepEqual(h.events.at(-1)?.data, { text: "Hel" });
  agent.next({ kind: "text", text: "lo" });
  agent.next({ kind: "text", text: ", wor" });
  await until(() => agent.waiting, "the agent took both pieces");
  assert.equal(h.names().filter((n) => n === "agent_delta").length, 1, "held for the window");
  h.clock.advance(40);
  await until(() => h.names().filter((n) => n === "agent_delta").length === 2);
  assert.deepEqual(h.events.at(-1)?.data, { text: "lo, wor" });
  agent.next({ kind: "text", text: "ld" }); // waits for the window...
  agent.next({ kind: "usage", inputTokens: 10, outputTokens: 3, finishReason: "tool-calls" });
  agent.next({ kind: "model_call" });
  agent.next({ kind: "text", text: "Second call." });
  agent.next({ kind: "usage", inputTokens: 20, outputTokens: 4, finishReason: "stop" });
  agent.end(); // ...and is flushed before the terminal event
  await until(() => h.names().includes("agent_completed"));
  const pieces = h.events.filter((e) => e.name === "agent_delta").map((e) => e.data.text).join("");
  assert.equal(pieces, "Hello, world\n\nSecond call.");
  assert.deepEqual(h.events.at(-1)?.data, {
    text: "Hello, world\n\nSecond call.",
    usage: { inputTokens: 30, outputTokens: 7 },
    finishReason: "stop",
  });
  const run = await h.store.getRun("alice", outcome.ack.runId);
  assert.equal(run?.reply, "Hello, world\n\nSecond call.");
  await h.dispose();
});

Deno.test("RunOrchestrator publishes a waiting piece before any other event of its run", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent, extraTools: [heldTool()] });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "hi"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "a" });
  await until(() => h.names().includes("agent_delta"));
  agent.next({ kind: "text", text: "b" }); // within the window: waits
  agent.next({ kind: "thinking", text: "hmm", delta: false });
  void agent.call("echo", { text: "x" });
  agent.end();
  await until(() => h.names().includes("agent_completed"));
  assert.deepEqual(h.names(), [
    "agent_started",
    "agent_delta",
    "agent_delta",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  assert.equal(h.events[2].data.text, "b");
  await h.dispose();
});

Deno.test("RunOrchestrator.cancel() stores the reply so far, closes the open tool call, then ends the run cancelled", async () => {
  const agent = new ScriptedAgent();
  const search = heldTool();
  const h = await setup({ agent, extraTools: [search] });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "search"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "Looking" });
  void agent.call("search", { q: "x" });
  await until(() => search.calls.length === 1, "the tool runs");
  assert.deepEqual(await h.orchestrator.cancel(alice, outcome.ack.runId), { ok: true });
  await until(() => h.names().includes("agent_cancelled"));
  assert.deepEqual(h.names(), [
    "agent_started",
    "agent_delta",
    "tool_executing",
    "tool_completed",
    "agent_cancelled",
  ]);
  assert.deepEqual(h.events[3].data.error, {
    code: "cancelled",
    message: "The run was cancelled",
  });
  assert.deepEqual(h.events[4].data, { text: "Looking" });
  const run = await h.store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([run?.status, run?.reply], ["cancelled", "Looking"]);
  const again = await h.orchestrator.cancel(alice, outcome.ack.runId);
  assert.equal(again.ok ? "" : again.code, "run_finished");
  const foreign = await h.orchestrator.cancel({ ...alice, userId: "bob" }, outcome.ack.runId);
  assert.equal(foreign.ok ? "" : foreign.code, "not_found");
  await h.dispose();
});

Deno.test("RunOrchestrator runs overlapping tool calls and refuses bad ones without tool_executing", async () => {
  const agent = new ScriptedAgent();
  const search = heldTool();
  const h = await setup({ agent, extraTools: [search] });
  assert.ok((await h.orchestrator.startChat(alice, chat("c1", "x"))).ok);
  await agent.started.promise;
  const first = agent.call("search", { q: "one" });
  const second = agent.call("search", { q: "two" });
  await until(() => search.calls.length === 2, "both calls run at once");
  const unknown = await agent.call("nope", {});
  assert.equal(unknown.ok ? "" : unknown.error.code, "unknown_tool");
  const invalid = await agent.call("search", { q: 7 });
  assert.equal(invalid.ok ? "" : invalid.error.code, "invalid_input");
  assert.match(invalid.text, /"q" must be string/);
  search.calls[1].resolve({ hits: 2 });
  search.calls[0].reject(new Error("index offline"));
  const [a, b] = await Promise.all([first, second]);
  assert.deepEqual([a.ok, a.ok ? null : a.error.code], [false, "tool_failed"]);
  assert.deepEqual([b.ok, b.ok ? b.output : null], [true, { hits: 2 }]);
  agent.next({ kind: "reply", text: "done" });
  agent.end();
  await until(() => h.names().includes("agent_completed"));
  const ids = new Set(
    h.events.filter((e) => e.name === "tool_completed").map((e) => e.data.toolCallId),
  );
  assert.equal(ids.size, 4, "every call has its own id");
  assert.equal(h.names().filter((n) => n === "tool_executing").length, 2);
  await h.dispose();
});

Deno.test("RunOrchestrator cuts a tool's output to the limit and marks it", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent, toolOutputMaxBytes: 10 });
  assert.ok((await h.orchestrator.startChat(alice, chat("c1", "x"))).ok);
  await agent.started.promise;
  const result = await agent.call("echo", { text: "abcdefghijklmnop" });
  assert.ok(result.ok);
  assert.equal(result.text, '{"text":"a\n[output cut at 10 bytes]');
  agent.end();
  await until(() => h.names().includes("tool_completed"));
  const completed = h.events.find((e) => e.name === "tool_completed")!;
  assert.deepEqual(completed.data.output, '{"text":"a');
  assert.equal(completed.data.truncated, true);
  await h.dispose();
});

Deno.test("RunOrchestrator ends a run whose agent breaks the contract agent_failed agent_error", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent });
  assert.ok((await h.orchestrator.startChat(alice, chat("c1", "x"))).ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "part" });
  agent.next({ kind: "reply", text: "whole" });
  await until(() => h.names().includes("agent_failed"));
  assert.equal((h.events.at(-1)?.data.error as { code: string }).code, "agent_error");
  assert.equal(h.events.at(-1)?.data.text, "part", "the reply so far");
  await h.dispose();
});

Deno.test("RunOrchestrator ends a run agent_failed with the agent's code and the reply so far", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "x"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "Par" });
  agent.next({ kind: "usage", inputTokens: 5, outputTokens: 1 });
  agent.next({ kind: "failed", code: "rate_limited", message: "Slow down", retryAfterMs: 2000 });
  await until(() => h.names().includes("agent_failed"));
  assert.deepEqual(h.events.at(-1)?.data, {
    text: "Par",
    error: { code: "rate_limited", message: "Slow down", retryAfterMs: 2000 },
    usage: { inputTokens: 5, outputTokens: 1 },
  });
  const run = await h.store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([run?.status, run?.reply, run?.error?.code], ["failed", "Par", "rate_limited"]);
  await h.dispose();
});

Deno.test("RunOrchestrator gives the agent the thread's earlier turns, oldest first", async () => {
  const h = await setup();
  const first = await h.orchestrator.startChat(alice, chat("c1", "what is 1+1"));
  assert.ok(first.ok);
  await until(() => h.names().includes("agent_completed"));
  await h.orchestrator.stop();
  const agent = new ScriptedAgent();
  const second = new RunOrchestrator({
    store: h.store,
    engine: h.engine,
    agent,
    tools: new ToolRegistry([]),
    clock: h.clock,
    log: silentLogger,
    instanceId: "i2",
  });
  const outcome = await second.startChat(alice, chat("c2", "and 2+2?", first.ack.threadId));
  assert.ok(outcome.ok);
  const request = await agent.started.promise;
  assert.deepEqual(request.history.map((t) => [t.role, t.text]), [
    ["user", "what is 1+1"],
    ["assistant", "1+1 = 2"],
  ]);
  assert.equal(request.text, "and 2+2?");
  assert.deepEqual(request.tools.specs, []);
  await second.stop();
  await h.dispose();
});

Deno.test("RunOrchestrator refuses a second chat on a busy thread and repeats an id's ack", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({ agent });
  const first = await h.orchestrator.startChat(alice, chat("c1", "one"));
  assert.ok(first.ok);
  const busy = await h.orchestrator.startChat(alice, chat("c2", "two", first.ack.threadId));
  assert.equal(busy.ok ? "" : busy.code, "thread_busy");
  const repeat = await h.orchestrator.startChat(alice, chat("c1", "one"));
  assert.deepEqual(repeat.ok && repeat.ack, { ...first.ack, duplicate: true, status: "running" });
  const conflict = await h.orchestrator.startChat(alice, chat("c1", "other"));
  assert.equal(conflict.ok ? "" : conflict.code, "idempotency_conflict");
  await h.dispose();
});

Deno.test("RunOrchestrator.startChat() stores nothing and answers unavailable when the engine is down", async () => {
  const clock = new ManualClock(Date.now());
  const engine = new MemoryEngine({ clock, retention: { count: 100, seconds: 60 } });
  const store = new MemoryStore({ clock });
  const orchestrator = new RunOrchestrator({
    store,
    engine,
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    tools: new ToolRegistry([]),
    clock,
    log: silentLogger,
    instanceId: "i1",
  });
  await engine.close(); // every call now fails as an unreachable engine would
  const outcome = await orchestrator.startChat(alice, chat("c1", "hi"));
  assert.equal(outcome.ok ? "" : outcome.code, "unavailable");
  assert.deepEqual((await store.listThreads("alice", { limit: 10 })).items, [], "nothing stored");
  await orchestrator.stop();
});

Deno.test("RunOrchestrator.drain() ends a run still going at the timeout with agent_failed shutdown", async () => {
  const agent = new ScriptedAgent();
  const search = heldTool();
  const h = await setup({ agent, extraTools: [search] });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "slow"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  void agent.call("search", { q: "x" });
  await until(() => search.calls.length === 1);
  const drained = h.orchestrator.drain(500);
  h.clock.advance(500);
  await drained;
  assert.deepEqual(h.names().slice(-2), ["tool_completed", "agent_failed"]);
  assert.deepEqual(h.events.at(-1)?.data, {
    text: "",
    error: { code: "shutdown", message: "The server shut down before the run finished" },
  });
  const run = await h.store.getRun("alice", outcome.ack.runId);
  assert.deepEqual([run?.status, run?.error?.code], ["failed", "shutdown"]);
  const after = await h.orchestrator.startChat(alice, chat("c9", "late"));
  assert.equal(after.ok ? "" : after.code, "draining");
  await h.dispose();
});

Deno.test("RunOrchestrator reaps a run whose owner stopped renewing its lease exactly once, rebuilding its text", async () => {
  const agent = new ScriptedAgent();
  const search = heldTool();
  const clock = new ManualClock(Date.now());
  const store = new MemoryStore({ clock });
  const engine = new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const events: UserEvent[] = [];
  await engine.subscribe("alice", (event) => events.push(event));
  // The owner starts a run and then goes silent (it is never started, so it renews nothing).
  const owner = new RunOrchestrator({
    store,
    engine,
    agent,
    tools: new ToolRegistry([search]),
    clock,
    log: silentLogger,
    instanceId: "dead",
    leaseMs: 1000,
    streamFlushMs: 0,
  });
  const outcome = await owner.startChat(alice, chat("c1", "x"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "So " });
  agent.next({ kind: "text", text: "far" });
  void agent.call("search", { q: "x" });
  await until(() => search.calls.length === 1);
  const survivors = ["s1", "s2"].map((instanceId) =>
    new RunOrchestrator({
      store,
      engine,
      agent: new DemoAgent({ clock, stepDelayMs: 0 }),
      tools: new ToolRegistry([]),
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
  const ofRun = events.filter((e) => e.runId === outcome.ack.runId);
  assert.deepEqual(ofRun.map((e) => e.name), [
    "agent_started",
    "agent_delta",
    "agent_delta",
    "tool_executing",
    "tool_completed",
    "agent_failed",
  ]);
  assert.equal((ofRun.at(-1)!.data.error as { code: string }).code, "interrupted");
  assert.equal(ofRun.at(-1)!.data.text, "So far", "rebuilt from the run's pieces");
  // The owner wakes up: its late end is refused, nothing is published twice.
  search.calls[0].resolve({ hits: 1 });
  await owner.stop();
  assert.equal(events.filter((e) => e.runId === outcome.ack.runId).length, ofRun.length);
  for (const s of survivors) await s.stop();
});

/** The memory engine, but the answer of chosen publish calls is lost after they were carried out. */
function lossyEngine(clock: ManualClock, lose: { publishMany?: number[]; publish?: number[] }) {
  const engine = new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const calls = { publishMany: 0, publish: 0 };
  const lost = () => new DependencyUnavailableError("redis", "Redis is unavailable: timed out");
  return new Proxy(engine, {
    get(target, property) {
      if (property === "publishMany") {
        return async (...args: Parameters<MemoryEngine["publishMany"]>) => {
          const results = await target.publishMany(...args);
          if (lose.publishMany?.includes(++calls.publishMany)) throw lost();
          return results;
        };
      }
      if (property === "publish") {
        return async (...args: Parameters<MemoryEngine["publish"]>) => {
          const result = await target.publish(...args);
          if (lose.publish?.includes(++calls.publish)) throw lost();
          return result;
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("RunOrchestrator publishes nothing twice when an engine's answer is lost after it acted", async () => {
  const clock = new ManualClock(Date.now());
  // The run's first batch of pieces, then the ending's first publish: both carried out, both
  // answered with a timeout.
  const engine = lossyEngine(clock, { publishMany: [1], publish: [2] });
  const agent = new ScriptedAgent();
  const h = await setup({ clock, agent, engine, streamFlushMs: 0 });
  h.orchestrator.start(); // endings are retried on its timer
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "x"));
  assert.ok(outcome.ok);
  await agent.started.promise;
  agent.next({ kind: "text", text: "one " });
  agent.next({ kind: "text", text: "two" });
  agent.end();
  // The ending's retries (on the clock) find in the log what was carried out and publish the rest.
  for (let i = 0; i < 10 && !h.names().includes("agent_failed"); i++) {
    for (let turn = 0; turn < 50; turn++) await new Promise((r) => setTimeout(r, 0));
    h.clock.advance(1_000);
  }
  await until(() => h.names().includes("agent_failed"));
  const ofRun = h.events.filter((e) => e.runId === outcome.ack.runId);
  const seqs = ofRun.map((e) => e.seq);
  assert.equal(new Set(seqs).size, seqs.length);
  const deltas = ofRun.filter((e) => e.name === "agent_delta").map((e) => e.data.text);
  // "two" may come after the failed publish stopped the run: then it is dropped, not doubled.
  assert.ok(["one ", "one two"].includes(deltas.join("")), `each piece once: ${deltas}`);
  const terminal = ofRun.filter((e) => TERMINAL.has(e.name));
  assert.equal(terminal.length, 1);
  assert.equal(terminal[0].data.text, deltas.join(""), "the terminal text is the pieces");
  await h.dispose();
});
