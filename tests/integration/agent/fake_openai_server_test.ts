/**
 * The fake OpenAI-compatible server speaks the streaming chat-completions wire format as
 * scripted: SSE `data:` chunks, `[DONE]`, the usage chunk only when asked for, and the failure
 * modes the model agent's tests rely on.
 */
import assert from "node:assert/strict";
import {
  Gate,
  httpError,
  type RecordedRequest,
  startFakeOpenAiServer,
  stream,
} from "../../_helpers/fake_openai_server.ts";

const REQUEST = {
  model: "fake",
  stream: true,
  messages: [{ role: "user", content: "hi" }],
};

function post(baseUrl: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

// deno-lint-ignore no-explicit-any
function dataLines(raw: string): any[] {
  return raw.split(/\r?\n/).filter((l) => l.startsWith("data: ")).map((l) => l.slice(6))
    .map((d) => d === "[DONE]" ? d : JSON.parse(d));
}

Deno.test("FakeOpenAiServer.reply() streams text chunks, a finish chunk and [DONE], and records the request", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("Hel", "lo", "!"));
  const response = await post(server.baseUrl, REQUEST);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  const events = dataLines(await response.text());
  assert.equal(events.at(-1), "[DONE]");
  const contents = events.slice(0, -1).map((e) => e.choices[0].delta.content ?? null);
  assert.deepEqual(contents, ["", "Hel", "lo", "!", null]);
  assert.equal(events.at(-2).choices[0].finish_reason, "stop");
  assert.ok(events.slice(0, -1).every((e) => e.object === "chat.completion.chunk"));
  assert.equal(server.requests.length, 1);
  assert.deepEqual(server.requests[0].body.messages, REQUEST.messages);
  await server.requests[0].ended;
  assert.equal(server.requests[0].wasAborted, false);
});

Deno.test("FakeOpenAiServer sends the usage chunk only when stream_options.include_usage is asked for", async () => {
  await using server = startFakeOpenAiServer();
  const reply = stream().text("a").usage({ promptTokens: 7, completionTokens: 3, cachedTokens: 2 });
  server.reply(reply, reply);
  const without = dataLines(await (await post(server.baseUrl, REQUEST)).text());
  assert.ok(without.every((e) => e === "[DONE]" || e.usage === undefined));
  const withUsage = dataLines(
    await (await post(server.baseUrl, {
      ...REQUEST,
      stream_options: { include_usage: true },
    })).text(),
  );
  const usage = withUsage.at(-2);
  assert.deepEqual(usage.choices, []);
  assert.deepEqual(usage.usage, {
    prompt_tokens: 7,
    completion_tokens: 3,
    total_tokens: 10,
    prompt_tokens_details: { cached_tokens: 2 },
  });
});

Deno.test("StreamReply.reasoning() and toolCall() write reasoning_content and tool-call fragments", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(
    stream()
      .reasoning("think", "ing")
      .toolCall({ id: "call_a", name: "calc", arguments: ['{"ex', 'pr":"1+1"}'] })
      .toolCall({ index: 0, id: "call_b", name: "echo", arguments: '{"text":"x"}' }),
  );
  const events = dataLines(await (await post(server.baseUrl, REQUEST)).text());
  const deltas = events.slice(1, -1).map((e) => e.choices[0].delta);
  assert.deepEqual(deltas, [
    { reasoning_content: "think" },
    { reasoning_content: "ing" },
    {
      tool_calls: [{
        index: 0,
        id: "call_a",
        type: "function",
        function: { name: "calc", arguments: '{"ex' },
      }],
    },
    { tool_calls: [{ index: 0, function: { arguments: 'pr":"1+1"}' } }] },
    {
      tool_calls: [{
        index: 0,
        id: "call_b",
        type: "function",
        function: { name: "echo", arguments: '{"text":"x"}' },
      }],
    },
    {},
  ]);
  assert.equal(events.at(-2).choices[0].finish_reason, "tool_calls");
});

Deno.test("StreamReply with CRLF line endings writes keep-alive comments and CRLF-terminated events", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream({ lineEnding: "\r\n" }).keepAlive().text("a").keepAlive("ping"));
  const raw = await (await post(server.baseUrl, REQUEST)).text();
  assert.ok(raw.includes(": keep-alive\r\n\r\n"));
  assert.ok(raw.includes(": ping\r\n\r\n"));
  assert.ok(raw.endsWith("data: [DONE]\r\n\r\n"));
  assert.equal(raw.replaceAll("\r\n", "").includes("\n"), false);
});

Deno.test("httpError() answers with the status, headers and an OpenAI-style error body", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(httpError(429, { headers: { "retry-after": "3" } }), httpError(500));
  const limited = await post(server.baseUrl, REQUEST);
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "3");
  assert.match((await limited.json()).error.message, /429/);
  const failed = await post(server.baseUrl, REQUEST);
  assert.equal(failed.status, 500);
  await failed.body?.cancel();
});

Deno.test("StreamReply.cut() breaks the body so the client's read fails after the chunks before it", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("partial").cut());
  const response = await post(server.baseUrl, REQUEST);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  await assert.rejects(async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
  }, TypeError);
  assert.ok(seen.includes('"partial"'));
  assert.equal(seen.includes("[DONE]"), false);
});

Deno.test("StreamReply.gate() holds the stream until released, and reached tells when it got there", async () => {
  await using server = startFakeOpenAiServer();
  const gate = new Gate();
  server.reply(stream().text("before").gate(gate).text("after"));
  const response = await post(server.baseUrl, REQUEST);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  await gate.reached;
  while (!seen.includes('"before"')) seen += (await reader.read()).value;
  // Nothing after the gate can have been written: the server has not passed it.
  assert.equal(seen.includes('"after"'), false);
  gate.release();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  assert.ok(seen.indexOf('"after"') > seen.indexOf('"before"'));
  assert.ok(seen.includes("[DONE]"));
});

Deno.test("StreamReply.stall() holds the request open and RecordedRequest.aborted resolves when the client aborts", async () => {
  await using server = startFakeOpenAiServer();
  server.reply(stream().text("x").stall());
  const controller = new AbortController();
  const response = await post(server.baseUrl, REQUEST, controller.signal);
  const reader = response.body!.getReader();
  await reader.read();
  const request: RecordedRequest = server.requests[0];
  assert.equal(request.wasAborted, false);
  controller.abort();
  await request.aborted;
  assert.equal(request.wasAborted, true);
});

Deno.test("FakeOpenAiServer.close() ends a stalled answer as a cut, not as a client abort", async () => {
  const server = startFakeOpenAiServer();
  server.reply(stream().stall());
  const response = await post(server.baseUrl, REQUEST);
  const closing = server.close();
  await assert.rejects(() => response.text(), TypeError);
  await closing;
  await server.requests[0].ended;
  assert.equal(server.requests[0].wasAborted, false);
});

Deno.test("FakeOpenAiServer answers 500 when nothing is scripted, and replyWhen()/fallback() pick replies", async () => {
  await using server = startFakeOpenAiServer();
  const none = await post(server.baseUrl, REQUEST);
  assert.equal(none.status, 500);
  await none.body?.cancel();
  assert.equal(server.unscripted, 1);

  server
    .replyWhen((r) => r.body.messages.at(-1).content === "second", stream().text("for second"))
    .fallback(stream().text("fallback"));
  const texts = [];
  for (const content of ["first", "second", "third"]) {
    const body = { ...REQUEST, messages: [{ role: "user", content }] };
    const events = dataLines(await (await post(server.baseUrl, body)).text());
    texts.push(events[1].choices[0].delta.content);
  }
  assert.deepEqual(texts, ["fallback", "for second", "fallback"]);
  await server.received(4);
  assert.equal(server.requests.length, 4);
});
