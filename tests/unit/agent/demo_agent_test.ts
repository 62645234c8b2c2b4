import assert from "node:assert/strict";
import { DemoAgent } from "../../../src/agent/demo_agent.ts";
import type { AgentStep } from "../../../src/agent/agent.ts";
import { manualClock } from "../../_helpers/manual_clock.ts";

const input = (text: string) => ({ userId: "u", threadId: "t", runId: "run-1234567890", text });

async function collect(agent: DemoAgent, text: string): Promise<AgentStep[]> {
  const steps: AgentStep[] = [];
  for await (const step of agent.run(input(text), { signal: new AbortController().signal })) {
    steps.push(step);
  }
  return steps;
}

Deno.test("DemoAgent.run() uses the calculator for arithmetic and replies with the value", async () => {
  const steps = await collect(
    new DemoAgent({ clock: manualClock(), stepDelayMs: 0 }),
    "what is 2+3*4",
  );
  assert.deepEqual(steps.map((s) => s.kind), ["thinking", "tool_call", "tool_result", "reply"]);
  const call = steps[1] as Extract<AgentStep, { kind: "tool_call" }>;
  assert.equal(call.tool, "calculator");
  assert.deepEqual(call.input, { expression: "2+3*4" });
  const result = steps[2] as Extract<AgentStep, { kind: "tool_result" }>;
  assert.equal(result.toolCallId, call.toolCallId);
  assert.match((steps[3] as { text: string }).text, /14/);
});

Deno.test("DemoAgent.run() echoes other text and emits the configured thinking steps", async () => {
  const steps = await collect(
    new DemoAgent({ clock: manualClock(), stepDelayMs: 0, thinkingSteps: 3 }),
    "hello there",
  );
  assert.deepEqual(steps.map((s) => s.kind), [
    "thinking",
    "thinking",
    "thinking",
    "tool_call",
    "tool_result",
    "reply",
  ]);
  assert.equal((steps[3] as { tool: string }).tool, "echo");
  assert.match((steps[5] as { text: string }).text, /hello there/);
});

Deno.test("DemoAgent.run() paces steps on the clock and stops when aborted", async () => {
  const clock = manualClock();
  const agent = new DemoAgent({ clock, stepDelayMs: 100 });
  const controller = new AbortController();
  const iterator = agent.run(input("hi"), { signal: controller.signal })[Symbol.asyncIterator]();
  const first = iterator.next();
  clock.advance(100);
  assert.equal(((await first).value as AgentStep).kind, "thinking");
  const second = iterator.next();
  controller.abort(new Error("stop"));
  await assert.rejects(second, /stop/);
  assert.equal(clock.pending, 0);
});
