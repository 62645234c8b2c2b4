/**
 * The model agent against a real HTTP server speaking the OpenAI-compatible streaming format
 * (tests/_helpers/fake_openai_server.ts): what it yields, what the model is sent, retries, the
 * idle timeout, cancel and failures. The agent is driven directly with an in-test tool handle.
 */
import assert from "node:assert/strict";
import type {
  AgentRequest,
  AgentStep,
  ToolCallResult,
  ToolHandle,
  ToolSpec,
  Turn,
} from "../../../src/agent/agent.ts";
import {
  createLlmAgent,
  type LlmAgentOptions,
  type LlmSettings,
} from "../../../src/agent/llm/mod.ts";
import {
  type FakeOpenAiServer,
  Gate,
  httpError,
  startFakeOpenAiServer,
  stream,
} from "../../_helpers/fake_openai_server.ts";
import { manualClock } from "../../_helpers/manual_clock.ts";

const KEY = "sk-test-key-6f1d2c9a";

const ECHO: ToolSpec = {
  name: "echo",
  description: "Repeats the text it is given",
  inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
};
const CALCULATOR: ToolSpec = {
  name: "calculator",
  description: "Evaluates an arithmetic expression",
  inputSchema: {
    type: "object",
    properties: { expression: { type: "string" } },
    required: ["expression"],
  },
};

/** A tool handle that records calls and answers with `answer` (echo of the input by default). */
class RecordingTools implements ToolHandle {
  readonly specs: readonly ToolSpec[];
  readonly calls: { name: string; input: unknown }[] = [];
  #answer: (name: string, input: unknown, n: number) => Promise<ToolCallResult> | ToolCallResult;

  constructor(
    answer?: (name: string, input: unknown, n: number) => Promise<ToolCallResult> | ToolCallResult,
    specs: readonly ToolSpec[] = [ECHO, CALCULATOR],
  ) {
    this.specs = specs;
    this.#answer = answer ?? ((name, input, n) => ok(n, { tool: name, input: input as never }));
  }

  call(name: string, input: unknown): Promise<ToolCallResult> {
    this.calls.push({ name, input });
    return Promise.resolve(this.#answer(name, input, this.calls.length));
  }
}

function ok(n: number, output: { [key: string]: never } | Record<string, unknown>): ToolCallResult {
  return { ok: true, toolCallId: `tc_${n}`, output: output as never, text: JSON.stringify(output) };
}

function settings(server: FakeOpenAiServer, overrides: Partial<LlmSettings> = {}): LlmSettings {
  return {
    provider: "openai-compatible",
    baseUrl: server.baseUrl,
    apiKey: KEY,
    model: "fake-model",
    historyMessages: 20,
    contextTokens: 16_000,
    maxSteps: 8,
    idleTimeoutMs: 60_000,
    ...overrides,
  };
}

function request(overrides: Partial<AgentRequest> = {}): AgentRequest {
  return {
    userId: "alice",
    threadId: "th_1",
    runId: "run_1",
    text: "hello",
    history: [],
    tools: new RecordingTools(),
    signal: new AbortController().signal,
    ...overrides,
  };
}

/** Records the backoff waits and does not wait. */
function recordedWaits(): { waits: number[]; wait: NonNullable<LlmAgentOptions["wait"]> } {
  const waits: number[] = [];
  return {
    waits,
    wait: (ms, signal) => {
      waits.push(ms);
      return signal.aborted ? Promise.reject(signal.reason) : Promise.resolve();
    },
  };
}

async function collect(steps: AsyncIterable<AgentStep>): Promise<AgentStep[]> {
  const all: AgentStep[] = [];
  for await (const step of steps) all.push(step);
  return all;
}

function texts(steps: readonly AgentStep[]): string {
  return steps.map((s) => s.kind === "text" ? s.text : "").join("");
}

function kinds(steps: readonly AgentStep[]): string[] {
  return steps.map((s) => s.kind);
}

/** Resolves with `promise`, or fails when it takes longer than `ms` (a hang is a failure). */
async function within<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `condition` holds, polling; fails after `ms`. */
async function until(condition: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("LlmAgent.run() streams text in many small chunks and yields the call's usage", async () => {
  await using server = startFakeOpenAiServer();
  const pieces = Array.from({ length: 50 }, (_, i) => `w${i} `);
  server.reply(
    stream().text(...pieces).usage({
      promptTokens: 120,
      completionTokens: 50,
      cachedTokens: 100,
    }),
  );
  const agent = createLlmAgent(settings(server));
  assert.equal(agent.provider, "openai-compatible");
  const steps = await collect(agent.run(request()));
  assert.equal(steps[0].kind, "model_call");
  assert.deepEqual(
    steps.filter((s) => s.kind === "text").map((s) => s.kind === "text" && s.text),
    pieces,
  );
  assert.deepEqual(steps.at(-1), {
    kind: "usage",
    inputTokens: 120, // cached input included
    outputTokens: 50,
    finishReason: "stop",
  });
  assert.equal(steps.filter((s) => s.kind === "failed").length, 0);
});

Deno.test("LlmAgent.run() sends the system prompt, the context, the tools and include_usage", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("ok"));
  const history: Turn[] = [
    { role: "user", text: "first question", runStatus: "completed" },
    { role: "assistant", text: "first answer", runStatus: "completed" },
    { role: "user", text: "this run failed", runStatus: "failed" },
    { role: "assistant", text: "", runStatus: "failed" },
  ];
  await collect(
    createLlmAgent(settings(server, { systemPrompt: "You are terse." })).run(
      request({ history, text: "try again", model: "per-run-model" }),
    ),
  );
  const [sent] = server.requests;
  assert.equal(sent.headers.get("authorization"), `Bearer ${KEY}`);
  assert.equal(sent.body.model, "per-run-model");
  assert.equal(sent.body.stream, true);
  assert.deepEqual(sent.body.stream_options, { include_usage: true });
  assert.deepEqual(sent.body.messages, [
    { role: "system", content: "You are terse." },
    { role: "user", content: "first question" },
    { role: "assistant", content: "first answer" },
    { role: "user", content: "this run failed\n\ntry again" },
  ]);
  assert.deepEqual(sent.body.tools.map((t: { function: { name: string } }) => t.function.name), [
    "echo",
    "calculator",
  ]);
  assert.deepEqual(sent.body.tools[0].function.parameters, ECHO.inputSchema);
  assert.equal(sent.body.tools[0].function.description, ECHO.description);
});

Deno.test("LlmAgent.run() takes a per-run system prompt over the configured one, and sends no tools when there are none", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("ok"));
  await collect(
    createLlmAgent(settings(server, { systemPrompt: "default" })).run(
      request({ systemPrompt: "for this run", tools: new RecordingTools(undefined, []) }),
    ),
  );
  assert.deepEqual(server.requests[0].body.messages[0], {
    role: "system",
    content: "for this run",
  });
  assert.equal(server.requests[0].body.tools, undefined);
});

Deno.test("LlmAgent.run() yields reasoning as thinking steps, delta false at each block start", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().reasoning("Let", " me", " think").text("Answer").reasoning("More"));
  const steps = await collect(createLlmAgent(settings(server)).run(request()));
  assert.deepEqual(steps.filter((s) => s.kind === "thinking" || s.kind === "text"), [
    { kind: "thinking", text: "Let", delta: false },
    { kind: "thinking", text: " me", delta: true },
    { kind: "thinking", text: " think", delta: true },
    { kind: "text", text: "Answer" },
    { kind: "thinking", text: "More", delta: false },
  ]);
});

Deno.test("LlmAgent.run() parses CRLF line endings and skips keep-alive lines", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream({ lineEnding: "\r\n" }).keepAlive().text("a").keepAlive().text("b", "c"));
  const steps = await collect(createLlmAgent(settings(server)).run(request()));
  assert.equal(texts(steps), "abc");
  assert.equal(steps.at(-1)?.kind, "usage");
});

Deno.test("LlmAgent.run() runs fragmented tool calls through the handle and sends their results back", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream()
      .text("Let me check.")
      .toolCall({ id: "call_1", name: "calculator", arguments: ['{"expr', 'ession":', '"2+3*4"}'] })
      .usage({ promptTokens: 30, completionTokens: 12 }),
    stream().text("It is 14.").usage({ promptTokens: 60, completionTokens: 5 }),
  );
  const tools = new RecordingTools((_name, _input, n) => ok(n, { value: 14 }));
  const steps = await collect(createLlmAgent(settings(server)).run(request({ tools })));
  assert.deepEqual(tools.calls, [{ name: "calculator", input: { expression: "2+3*4" } }]);
  assert.deepEqual(kinds(steps), ["model_call", "text", "usage", "model_call", "text", "usage"]);
  assert.equal(texts(steps), "Let me check.It is 14.");
  const usage = steps.filter((s) => s.kind === "usage");
  assert.deepEqual(usage.map((u) => u.kind === "usage" && u.finishReason), ["tool-calls", "stop"]);
  // The orchestrator sums the calls' usage: 90 in, 17 out.
  assert.deepEqual(
    usage.reduce(
      (sum, u) => u.kind === "usage" ? [sum[0] + u.inputTokens, sum[1] + u.outputTokens] : sum,
      [0, 0],
    ),
    [90, 17],
  );

  const second = server.requests[1].body.messages;
  assert.deepEqual(second.slice(-2), [
    {
      role: "assistant",
      content: "Let me check.",
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "calculator", arguments: '{"expression":"2+3*4"}' },
      }],
    },
    { role: "tool", tool_call_id: "call_1", content: '{"value":14}' },
  ]);
});

Deno.test("LlmAgent.run() runs two calls that reuse index 0 (Ollama) concurrently, each with its own result", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream()
      .toolCall({ index: 0, id: "call_a", name: "echo", arguments: '{"text":"one"}' })
      .toolCall({ index: 0, id: "call_b", name: "calculator", arguments: '{"expression":"1+1"}' }),
    stream().text("done"),
  );
  const held = Promise.withResolvers<void>();
  const tools = new RecordingTools(async (name, _input, n) => {
    await held.promise;
    return ok(n, { from: name });
  });
  const run = collect(createLlmAgent(settings(server)).run(request({ tools })));
  // Both calls are in flight before either completes.
  await until(() => tools.calls.length === 2);
  held.resolve();
  const steps = await run;
  assert.equal(texts(steps), "done");
  assert.deepEqual(tools.calls, [
    { name: "echo", input: { text: "one" } },
    { name: "calculator", input: { expression: "1+1" } },
  ]);
  const toolMessages = server.requests[1].body.messages.filter((m: { role: string }) =>
    m.role === "tool"
  );
  assert.deepEqual(toolMessages, [
    { role: "tool", tool_call_id: "call_a", content: '{"from":"echo"}' },
    { role: "tool", tool_call_id: "call_b", content: '{"from":"calculator"}' },
  ]);
});

Deno.test("LlmAgent.run() hands malformed arguments and unknown tools to the handle, and the model sees its error text", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream()
      .toolCall({ id: "call_x", name: "echo", arguments: '{"text": "unterminated' })
      .toolCall({ id: "call_y", name: "teleport", arguments: "{}" }),
    stream().text("sorry"),
  );
  const tools = new RecordingTools((name, _input, n) => ({
    ok: false,
    toolCallId: `tc_${n}`,
    error: name === "echo"
      ? { code: "invalid_input", message: "input is not an object" }
      : { code: "unknown_tool", message: "no tool named teleport" },
    text: name === "echo" ? "Error: input is not an object" : "Error: no tool named teleport",
  }));
  const steps = await collect(createLlmAgent(settings(server)).run(request({ tools })));
  assert.equal(texts(steps), "sorry");
  assert.deepEqual(tools.calls, [
    { name: "echo", input: '{"text": "unterminated' },
    { name: "teleport", input: {} },
  ]);
  const toolMessages = server.requests[1].body.messages.filter((m: { role: string }) =>
    m.role === "tool"
  );
  assert.deepEqual(toolMessages.map((m: { content: string }) => m.content), [
    "Error: input is not an object",
    "Error: no tool named teleport",
  ]);
});

Deno.test("LlmAgent.run() fails with max_steps when the model still asks for tools after the last call, without running them", async () => {
  await using server = startFakeOpenAiServer();
  const askAgain = stream().toolCall({ id: "c", name: "echo", arguments: '{"text":"again"}' });
  server.reply(askAgain, askAgain, askAgain);
  const tools = new RecordingTools();
  const steps = await collect(
    createLlmAgent(settings(server, { maxSteps: 2 })).run(request({ tools })),
  );
  assert.equal(server.requests.length, 2);
  assert.equal(tools.calls.length, 1);
  const last = steps.at(-1);
  assert.equal(last?.kind, "failed");
  assert.equal(last?.kind === "failed" && last.code, "max_steps");
  assert.equal(kinds(steps).filter((k) => k === "model_call").length, 2);
});

Deno.test("LlmAgent.run() fails with context_too_long before any request when the message alone exceeds the budget", async () => {
  await using server = startFakeOpenAiServer();
  const steps = await collect(
    createLlmAgent(settings(server, { contextTokens: 10 })).run(request({ text: "x".repeat(41) })),
  );
  assert.deepEqual(kinds(steps), ["failed"]);
  assert.equal(steps[0].kind === "failed" && steps[0].code, "context_too_long");
  assert.equal(server.requests.length, 0);
});

Deno.test("LlmAgent.run() retries a 429 after its Retry-After and a 500 after a backoff, before the first piece", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    httpError(429, { headers: { "retry-after": "3" } }),
    httpError(500),
    stream().text("finally"),
  );
  const { waits, wait } = recordedWaits();
  const steps = await collect(
    createLlmAgent(settings(server), { wait, retryBaseDelayMs: 100 }).run(request()),
  );
  assert.equal(texts(steps), "finally");
  assert.equal(server.requests.length, 3);
  assert.equal(waits[0], 3000);
  // The second retry's backoff: 200 ms with up to half taken off at random.
  assert.ok(waits[1] >= 100 && waits[1] <= 200, String(waits[1]));
  // A retry is the same model call.
  assert.equal(kinds(steps).filter((k) => k === "model_call").length, 1);
});

Deno.test("LlmAgent.run() gives up after two retries with the last failure's code", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    httpError(500),
    httpError(503),
    httpError(429, { headers: { "retry-after-ms": "20" } }),
    stream().text("never"),
  );
  const { waits, wait } = recordedWaits();
  const steps = await collect(createLlmAgent(settings(server), { wait }).run(request()));
  assert.equal(server.requests.length, 3);
  assert.equal(waits.length, 2);
  assert.deepEqual(steps.at(-1), {
    kind: "failed",
    code: "rate_limited",
    message: "The model provider is rate limiting requests: fake server: scripted 429",
    retryAfterMs: 20,
  });
});

Deno.test("LlmAgent.run() fails at once with rate_limited and retryAfterMs when Retry-After is over 30 s", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(httpError(429, { headers: { "retry-after": "31" } }), stream().text("never"));
  const { waits, wait } = recordedWaits();
  const steps = await collect(createLlmAgent(settings(server), { wait }).run(request()));
  assert.equal(server.requests.length, 1);
  assert.deepEqual(waits, []);
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "rate_limited");
  assert.equal(last?.kind === "failed" && last.retryAfterMs, 31_000);
});

Deno.test("LlmAgent.run() does not retry a call cut after its first piece, and keeps what it yielded", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("Half an ans").cut(), stream().text("never"));
  const { waits, wait } = recordedWaits();
  const steps = await collect(createLlmAgent(settings(server), { wait }).run(request()));
  assert.equal(server.requests.length, 1);
  assert.deepEqual(waits, []);
  assert.equal(texts(steps), "Half an ans");
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "provider_unavailable");
});

Deno.test("LlmAgent.run() retries a call cut before its first piece, even with a tool call half streamed", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream().toolCall({ id: "c", name: "echo", arguments: ['{"te', 'xt"'] }).cut(),
    stream().text("recovered"),
  );
  const tools = new RecordingTools();
  const { wait } = recordedWaits();
  const steps = await collect(createLlmAgent(settings(server), { wait }).run(request({ tools })));
  assert.equal(server.requests.length, 2);
  assert.equal(tools.calls.length, 0);
  assert.equal(texts(steps), "recovered");
});

Deno.test("LlmAgent.run() maps 4xx to provider_rejected without a retry and keeps the key out of the message", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    httpError(401, {
      body: JSON.stringify({ error: { message: `Incorrect API key provided: ${KEY}` } }),
    }),
  );
  const { waits, wait } = recordedWaits();
  const steps = await collect(createLlmAgent(settings(server), { wait }).run(request()));
  assert.equal(server.requests.length, 1);
  assert.deepEqual(waits, []);
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "provider_rejected");
  assert.ok(last?.kind === "failed" && !last.message.includes(KEY), JSON.stringify(last));
  assert.match(last?.kind === "failed" ? last.message : "", /HTTP 401.*\[redacted\]/);
});

Deno.test("LlmAgent.run() maps the provider's context-length error to context_too_long", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(httpError(400, {
    body: JSON.stringify({
      error: {
        message: "This model's maximum context length is 8192 tokens",
        code: "context_length_exceeded",
      },
    }),
  }));
  const steps = await collect(createLlmAgent(settings(server)).run(request()));
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "context_too_long");
});

Deno.test("LlmAgent.run() fails with provider_unavailable when nothing listens", async () => {
  const server = startFakeOpenAiServer();
  const baseUrl = server.baseUrl;
  await server.close();
  const { waits, wait } = recordedWaits();
  const steps = await collect(
    createLlmAgent({ ...settings(server), baseUrl }, { wait }).run(request()),
  );
  assert.equal(waits.length, 2);
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "provider_unavailable");
});

Deno.test("LlmAgent.run() fails with timeout when the model stalls past the idle timeout, and aborts the request", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("a").stall(), stream().text("never"));
  const clock = manualClock();
  const { waits, wait } = recordedWaits();
  const run = createLlmAgent(settings(server, { idleTimeoutMs: 5_000 }), { clock, wait })
    .run(request())[Symbol.asyncIterator]();
  assert.equal((await run.next()).value?.kind, "model_call");
  assert.deepEqual((await run.next()).value, { kind: "text", text: "a" });
  const rest = collect({ [Symbol.asyncIterator]: () => run });
  // The agent now waits for bytes that never come: its idle timer is armed.
  await until(() => clock.pending > 0);
  clock.advance(4_999);
  assert.equal(server.requests[0].wasAborted, false);
  clock.advance(1);
  const steps = await within(rest);
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "timeout");
  assert.match(last?.kind === "failed" ? last.message : "", /5000 ms/);
  await within(server.requests[0].aborted);
  assert.equal(server.requests.length, 1);
  assert.deepEqual(waits, []);
});

Deno.test("LlmAgent.run() does not count time in a tool against the idle timeout", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream().toolCall({ id: "c", name: "echo", arguments: '{"text":"slow"}' }),
    stream().text("after the tool"),
  );
  const clock = manualClock();
  const held = Promise.withResolvers<void>();
  const tools = new RecordingTools(async (_name, _input, n) => {
    await held.promise;
    return ok(n, { text: "slow" });
  });
  const run = collect(
    createLlmAgent(settings(server, { idleTimeoutMs: 1_000 }), { clock }).run(request({ tools })),
  );
  await until(() => tools.calls.length === 1);
  // No request is open while the tool runs: no idle timer, however long it takes.
  assert.equal(clock.pending, 0);
  clock.advance(60_000);
  held.resolve();
  const steps = await run;
  assert.equal(texts(steps), "after the tool");
  assert.equal(steps.filter((s) => s.kind === "failed").length, 0);
});

Deno.test("LlmAgent.run() stops at once on cancel and the server sees its request aborted", async () => {
  await using server = startFakeOpenAiServer();
  const gate = new Gate();
  server.reply(stream().text("partial").gate(gate).text("never sent"));
  const cancel = new AbortController();
  const run = createLlmAgent(settings(server)).run(request({ signal: cancel.signal }))[
    Symbol.asyncIterator
  ]();
  assert.equal((await run.next()).value?.kind, "model_call");
  assert.deepEqual((await run.next()).value, { kind: "text", text: "partial" });
  await gate.reached;
  cancel.abort(new Error("cancelled by the user"));
  await within(server.requests[0].aborted);
  const rest = await within(collect({ [Symbol.asyncIterator]: () => run }));
  assert.deepEqual(rest, []);
  assert.equal(server.requests.length, 1);
});

Deno.test("LlmAgent.run() stops on cancel during a tool call and during a retry wait", async (t) => {
  await t.step("during a tool call", async () => {
    await using server = startFakeOpenAiServer();
    server.reply(stream().toolCall({ id: "c", name: "echo", arguments: '{"text":"x"}' }));
    const cancel = new AbortController();
    const tools = new RecordingTools(() =>
      new Promise<ToolCallResult>((_resolve, reject) =>
        cancel.signal.addEventListener("abort", () => reject(cancel.signal.reason))
      )
    );
    const run = collect(
      createLlmAgent(settings(server)).run(request({ tools, signal: cancel.signal })),
    );
    await until(() => tools.calls.length === 1);
    cancel.abort(new Error("cancelled"));
    const steps = await within(run);
    assert.deepEqual(kinds(steps), ["model_call", "usage"]);
    assert.equal(server.requests.length, 1);
  });
  await t.step("during a retry wait", async () => {
    await using server = startFakeOpenAiServer();
    server.reply(httpError(503), stream().text("never"));
    const cancel = new AbortController();
    const waiting = Promise.withResolvers<void>();
    const wait = (_ms: number, signal: AbortSignal) =>
      new Promise<void>((_resolve, reject) => {
        signal.addEventListener("abort", () => reject(signal.reason));
        waiting.resolve();
      });
    const run = collect(
      createLlmAgent(settings(server), { wait }).run(request({ signal: cancel.signal })),
    );
    await waiting.promise;
    cancel.abort(new Error("cancelled"));
    assert.deepEqual(kinds(await within(run)), ["model_call"]);
    assert.equal(server.requests.length, 1);
  });
});

Deno.test("LlmAgent.run() ends the request when its consumer stops reading", async () => {
  await using server = startFakeOpenAiServer();
  const gate = new Gate();
  server.reply(stream().text("first").gate(gate).text("never sent"));
  const run = createLlmAgent(settings(server)).run(request())[Symbol.asyncIterator]();
  await run.next();
  assert.deepEqual((await run.next()).value, { kind: "text", text: "first" });
  await within(run.return!(undefined));
  await within(server.requests[0].aborted);
  gate.release();
});

Deno.test("LlmAgent.run() keeps a password of the base URL out of failure messages", async () => {
  await using server = startFakeOpenAiServer();
  const password = "hunter2-base-url";
  server.reply(httpError(403, {
    body: JSON.stringify({ error: { message: `user proxy:${password} may not use this model` } }),
  }));
  const baseUrl = server.baseUrl.replace("http://", `http://proxy:${password}@`);
  const steps = await collect(
    createLlmAgent({ ...settings(server), baseUrl, apiKey: undefined }).run(request()),
  );
  const last = steps.at(-1);
  assert.equal(last?.kind === "failed" && last.code, "provider_rejected");
  assert.ok(last?.kind === "failed" && !last.message.includes(password), JSON.stringify(last));
  assert.match(last?.kind === "failed" ? last.message : "", /proxy:\[redacted\]/);
});
