import assert from "node:assert/strict";
import { createDemoTools, DemoAgent } from "../../../src/agent/mod.ts";
import type { AgentStep, ToolCallResult, ToolHandle } from "../../../src/agent/mod.ts";
import { ToolRegistry } from "../../../src/tools/mod.ts";
import { manualClock } from "../../_helpers/manual_clock.ts";

/** A tool handle that runs the demo tools directly and records each call. */
function demoHandle(options: { refuse?: boolean } = {}) {
  const registry = new ToolRegistry(createDemoTools({ clock: manualClock() }));
  const calls: [string, unknown][] = [];
  const handle: ToolHandle = {
    specs: registry.specs,
    async call(name, input): Promise<ToolCallResult> {
      calls.push([name, input]);
      if (options.refuse) {
        const error = { code: "denied" as const, message: "Denied: not today" };
        return { ok: false, toolCallId: "t1", error, text: error.message };
      }
      try {
        const output = await registry.get(name)!.execute(input as never, {
          signal: new AbortController().signal,
          userId: "u",
          threadId: "t",
          runId: "r",
          toolCallId: "t1",
        });
        return { ok: true, toolCallId: "t1", output, text: JSON.stringify(output) };
      } catch (error) {
        const info = { code: "tool_failed" as const, message: (error as Error).message };
        return { ok: false, toolCallId: "t1", error: info, text: info.message };
      }
    },
  };
  return { handle, calls };
}

async function collect(agent: DemoAgent, text: string, tools: ToolHandle): Promise<AgentStep[]> {
  const steps: AgentStep[] = [];
  const request = {
    userId: "u",
    threadId: "t",
    runId: "run-1",
    text,
    history: [],
    tools,
    signal: new AbortController().signal,
  };
  for await (const step of agent.run(request)) steps.push(step);
  return steps;
}

Deno.test("DemoAgent.run() calls the calculator through the handle and replies with the value", async () => {
  const { handle, calls } = demoHandle();
  const steps = await collect(
    new DemoAgent({ clock: manualClock(), stepDelayMs: 0 }),
    "what is 2+3*4",
    handle,
  );
  assert.deepEqual(steps.map((s) => s.kind), ["thinking", "reply"]);
  assert.deepEqual(calls, [["calculator", { expression: "2+3*4" }]]);
  assert.equal((steps[1] as { text: string }).text, "2+3*4 = 14");
});

Deno.test("DemoAgent.run() echoes other text and emits the configured thinking steps", async () => {
  const { handle, calls } = demoHandle();
  const steps = await collect(
    new DemoAgent({ clock: manualClock(), stepDelayMs: 0, thinkingSteps: 3 }),
    "hello there",
    handle,
  );
  assert.deepEqual(steps.map((s) => s.kind), ["thinking", "thinking", "thinking", "reply"]);
  assert.deepEqual(calls, [["echo", { text: "hello there" }]]);
  assert.match((steps.at(-1) as { text: string }).text, /hello there/);
});

Deno.test("DemoAgent.run() still replies when its tool call is refused, saying so", async () => {
  const { handle } = demoHandle({ refuse: true });
  const steps = await collect(
    new DemoAgent({ clock: manualClock(), stepDelayMs: 0 }),
    "what is 6*7",
    handle,
  );
  assert.equal(steps.at(-1)?.kind, "reply");
  assert.match((steps.at(-1) as { text: string }).text, /could not use the calculator.*not today/);
});

Deno.test("createDemoTools() calculator throws on division by zero", async () => {
  const [calculator] = createDemoTools({ clock: manualClock() });
  const context = {
    signal: new AbortController().signal,
    userId: "u",
    threadId: "t",
    runId: "r",
    toolCallId: "c",
  };
  assert.deepEqual(await calculator.execute({ expression: "(1+2)*3" }, context), { value: "9" });
  await assert.rejects(
    async () => await calculator.execute({ expression: "1/0" }, context),
    /division by zero/,
  );
});
