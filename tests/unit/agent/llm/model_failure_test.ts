import assert from "node:assert/strict";
import { APICallError } from "@ai-sdk/provider";
import {
  classifyModelError,
  cleanMessage,
  MAX_MESSAGE_CHARS,
  retryAfterMs,
} from "../../../../src/agent/llm/mod.ts";

const KEY = "sk-secret-0123456789";
const OPTIONS = { secrets: [KEY], now: Date.parse("2030-01-01T00:00:00Z") };

function apiError(statusCode: number, message: string, headers: Record<string, string> = {}) {
  return new APICallError({
    message,
    url: "http://127.0.0.1:1/v1/chat/completions",
    requestBodyValues: {},
    statusCode,
    responseHeaders: headers,
    responseBody: JSON.stringify({ error: { message } }),
  });
}

Deno.test("classifyModelError() maps HTTP statuses to run failure codes", () => {
  const cases: [number, string, string, boolean][] = [
    [429, "slow down", "rate_limited", true],
    [500, "boom", "provider_unavailable", true],
    [503, "overloaded", "provider_unavailable", true],
    [529, "overloaded", "provider_unavailable", true],
    [408, "request timeout", "provider_unavailable", true],
    [401, "Incorrect API key", "provider_rejected", false],
    [404, "model 'nope' not found", "provider_rejected", false],
    [400, "bad request", "provider_rejected", false],
    [413, "payload too large", "context_too_long", false],
    [400, "This model's maximum context length is 8192 tokens", "context_too_long", false],
    [400, "prompt is too long: 210000 tokens > 200000 maximum", "context_too_long", false],
    [400, "the request exceeds the available context size", "context_too_long", false],
  ];
  for (const [status, message, code, retryable] of cases) {
    const failure = classifyModelError(apiError(status, message), OPTIONS);
    assert.equal(failure.code, code, `${status} ${message}`);
    assert.equal(failure.retryable, retryable, `${status} ${message}`);
    assert.ok(failure.message.includes(message), failure.message);
  }
});

Deno.test("classifyModelError() reads retryAfterMs of a 429 from retry-after-ms, Retry-After seconds or date", () => {
  assert.equal(
    classifyModelError(apiError(429, "x", { "retry-after": "3" }), OPTIONS).retryAfterMs,
    3000,
  );
  assert.equal(
    classifyModelError(apiError(429, "x", { "retry-after-ms": "250", "retry-after": "9" }), OPTIONS)
      .retryAfterMs,
    250,
  );
  assert.equal(
    classifyModelError(
      apiError(429, "x", { "retry-after": "Tue, 01 Jan 2030 00:00:42 GMT" }),
      OPTIONS,
    ).retryAfterMs,
    42_000,
  );
  assert.equal("retryAfterMs" in classifyModelError(apiError(429, "x"), OPTIONS), false);
});

Deno.test("classifyModelError() treats a failed fetch, a cut stream and error chunks as provider_unavailable", () => {
  const unreachable = classifyModelError(
    new TypeError("error sending request: connection refused"),
    OPTIONS,
  );
  assert.deepEqual([unreachable.code, unreachable.retryable], ["provider_unavailable", true]);
  assert.match(unreachable.message, /connection refused/);
  const cut = classifyModelError(apiError(200, "Failed to process successful response"), OPTIONS);
  assert.equal(cut.code, "provider_unavailable");
  const chunk = classifyModelError({ message: "model crashed", type: "server_error" }, OPTIONS);
  assert.equal(chunk.code, "provider_unavailable");
  const overloaded = classifyModelError(
    { message: "Overloaded", type: "overloaded_error", statusCode: 529 },
    OPTIONS,
  );
  assert.equal(overloaded.code, "provider_unavailable");
  const limited = classifyModelError({ message: "slow", type: "rate_limit_error" }, OPTIONS);
  assert.equal(limited.code, "rate_limited");
  const tooLong = classifyModelError({ message: "x", code: "context_length_exceeded" }, OPTIONS);
  assert.equal(tooLong.code, "context_too_long");
  assert.equal(classifyModelError(undefined, OPTIONS).code, "provider_unavailable");
});

Deno.test("classifyModelError() redacts the API key from the provider's message", () => {
  const failure = classifyModelError(apiError(401, `Incorrect API key provided: ${KEY}.`), OPTIONS);
  assert.equal(failure.code, "provider_rejected");
  assert.ok(!failure.message.includes(KEY));
  assert.match(failure.message, /\[redacted\]/);
});

Deno.test("cleanMessage() makes one short line without secrets", () => {
  const message = cleanMessage(`line one\nline two ${KEY} ${"x".repeat(1000)}`, [KEY]);
  assert.ok(!message.includes("\n"));
  assert.ok(!message.includes(KEY));
  assert.equal(message.length, MAX_MESSAGE_CHARS);
  assert.equal(cleanMessage("short", []), "short");
});

Deno.test("retryAfterMs() ignores absent and unreadable headers and never goes below 0", () => {
  assert.equal(retryAfterMs(undefined, 0), undefined);
  assert.equal(retryAfterMs({}, 0), undefined);
  assert.equal(retryAfterMs({ "retry-after": "soon" }, 0), undefined);
  assert.equal(retryAfterMs({ "retry-after": "0.05" }, 0), 50);
  assert.equal(
    retryAfterMs({ "retry-after": "Tue, 01 Jan 2030 00:00:00 GMT" }, Date.parse("2031-01-01")),
    0,
  );
});
