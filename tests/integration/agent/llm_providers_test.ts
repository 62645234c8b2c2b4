/**
 * The `openai` and `anthropic` providers of the model agent, each against a local server
 * speaking its wire format: where the request goes, the key, the system prompt in the
 * provider's own field, streamed text and usage (cached input included).
 */
import assert from "node:assert/strict";
import type { AgentRequest, AgentStep } from "../../../src/agent/agent.ts";
import { createLlmAgent, type LlmSettings } from "../../../src/agent/llm/mod.ts";
import { startFakeOpenAiServer, stream } from "../../_helpers/fake_openai_server.ts";

const KEY = "sk-provider-key-93ab";

const LIMITS = { historyMessages: 20, contextTokens: 16_000, maxSteps: 8, idleTimeoutMs: 60_000 };

function request(): AgentRequest {
  return {
    userId: "alice",
    threadId: "th_1",
    runId: "run_1",
    text: "hello",
    history: [
      { role: "user", text: "earlier", runStatus: "completed" },
      { role: "assistant", text: "reply", runStatus: "completed" },
    ],
    tools: { specs: [], call: () => Promise.reject(new Error("no tools")) },
    signal: new AbortController().signal,
  };
}

async function collect(steps: AsyncIterable<AgentStep>): Promise<AgentStep[]> {
  const all: AgentStep[] = [];
  for await (const step of steps) all.push(step);
  return all;
}

Deno.test("createLlmAgent() with provider openai streams Chat Completions with usage from {baseUrl}/chat/completions", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("Hi", "!").usage({ promptTokens: 9, completionTokens: 2 }));
  const settings: LlmSettings = {
    provider: "openai",
    baseUrl: server.baseUrl,
    apiKey: KEY,
    model: "gpt-test",
    systemPrompt: "Be kind.",
    ...LIMITS,
  };
  const agent = createLlmAgent(settings);
  assert.equal(agent.provider, "openai");
  const steps = await collect(agent.run(request()));
  assert.deepEqual(steps, [
    { kind: "model_call" },
    { kind: "text", text: "Hi" },
    { kind: "text", text: "!" },
    { kind: "usage", inputTokens: 9, outputTokens: 2, finishReason: "stop" },
  ]);
  const [sent] = server.requests;
  assert.equal(sent.headers.get("authorization"), `Bearer ${KEY}`);
  assert.equal(sent.body.model, "gpt-test");
  assert.equal(sent.body.stream_options.include_usage, true);
  assert.equal(sent.body.messages[0].content, "Be kind.");
  assert.deepEqual(sent.body.messages.slice(1), [
    { role: "user", content: "earlier" },
    { role: "assistant", content: "reply" },
    { role: "user", content: "hello" },
  ]);
});

/** The Anthropic Messages stream of one short text reply. */
function anthropicStream(): string {
  const events: [string, unknown][] = [
    ["message_start", {
      type: "message_start",
      message: {
        id: "msg_1",
        type: "message",
        role: "assistant",
        model: "claude-test",
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: 20,
          cache_read_input_tokens: 5,
          cache_creation_input_tokens: 3,
          output_tokens: 1,
        },
      },
    }],
    ["content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block: { type: "text", text: "" },
    }],
    ["content_block_delta", {
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text: "Hel" },
    }],
    ["ping", { type: "ping" }],
    ["content_block_delta", {
      type: "content_block_delta",
      index: 0,
      delta: { type: "text_delta", text: "lo" },
    }],
    ["content_block_stop", { type: "content_block_stop", index: 0 }],
    ["message_delta", {
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: 7 },
    }],
    ["message_stop", { type: "message_stop" }],
  ];
  return events.map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    .join("");
}

Deno.test("createLlmAgent() with provider anthropic sends the system prompt in its system field and counts cached input", async () => {
  const received: { path: string; headers: Headers; body: Record<string, unknown> }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    received.push({
      path: new URL(req.url).pathname,
      headers: req.headers,
      body: await req.json(),
    });
    return new Response(anthropicStream(), { headers: { "content-type": "text/event-stream" } });
  });
  try {
    const settings: LlmSettings = {
      provider: "anthropic",
      baseUrl: `http://127.0.0.1:${server.addr.port}/v1`,
      apiKey: KEY,
      model: "claude-test",
      systemPrompt: "Be kind.",
      ...LIMITS,
    };
    const steps = await collect(createLlmAgent(settings).run(request()));
    assert.deepEqual(steps, [
      { kind: "model_call" },
      { kind: "text", text: "Hel" },
      { kind: "text", text: "lo" },
      // 20 new + 5 read from the cache + 3 written to it.
      { kind: "usage", inputTokens: 28, outputTokens: 7, finishReason: "stop" },
    ]);
    const [sent] = received;
    assert.equal(sent.path, "/v1/messages");
    assert.equal(sent.headers.get("x-api-key"), KEY);
    assert.equal(sent.body.stream, true);
    assert.deepEqual(sent.body.system, [{ type: "text", text: "Be kind." }]);
    assert.deepEqual(
      (sent.body.messages as { role: string }[]).map((m) => m.role),
      ["user", "assistant", "user"],
    );
  } finally {
    await server.shutdown();
  }
});
