import assert from "node:assert/strict";
import { ConfigError, loadConfig, loadLlmConfig } from "../../../src/config/mod.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const KEY = "sk-test-0123456789abcdef";

function configError(vars: Record<string, string>): ConfigError {
  try {
    loadLlmConfig(env(vars));
  } catch (error) {
    assert.ok(error instanceof ConfigError, `${JSON.stringify(vars)}: ${error}`);
    return error;
  }
  assert.fail(`no ConfigError for ${JSON.stringify(vars)}`);
}

Deno.test("loadLlmConfig() stays on the demo agent with the default run limits when nothing is set", () => {
  assert.deepEqual(loadLlmConfig(env({})), {
    agent: "demo",
    streamFlushMs: 40,
    toolOutputMaxBytes: 16_384,
    maxActiveRunsPerUser: 4,
    toolApprovalTimeoutMs: 300_000,
    toolsRequireApproval: [],
  });
  assert.equal(loadConfig(env({})).llm.agent, "demo");
});

Deno.test("loadLlmConfig() reads the openai-compatible model agent with its defaults", () => {
  const config = loadLlmConfig(env({
    AGENT: "llm",
    LLM_BASE_URL: "http://127.0.0.1:11434/v1/",
    LLM_MODEL: "llama3.2",
  }));
  assert.equal(config.agent, "llm");
  assert.deepEqual(config.settings, {
    provider: "openai-compatible",
    baseUrl: "http://127.0.0.1:11434/v1",
    apiKey: undefined,
    model: "llama3.2",
    systemPrompt: undefined,
    historyMessages: 20,
    contextTokens: 16_000,
    maxSteps: 8,
    idleTimeoutMs: 60_000,
  });
});

Deno.test("loadLlmConfig() reads every variable when set", () => {
  const config = loadLlmConfig(env({
    AGENT: "llm",
    LLM_PROVIDER: "anthropic",
    LLM_API_KEY: KEY,
    LLM_MODEL: "claude-sonnet-4-5",
    LLM_SYSTEM_PROMPT: "Be brief.",
    LLM_HISTORY_MESSAGES: "0",
    LLM_CONTEXT_TOKENS: "8000",
    LLM_MAX_STEPS: "3",
    LLM_IDLE_TIMEOUT_MS: "5000",
    STREAM_FLUSH_MS: "0",
    TOOL_OUTPUT_MAX_BYTES: "1024",
    MAX_ACTIVE_RUNS_PER_USER: "0",
    TOOL_APPROVAL_TIMEOUT_MS: "60000",
    TOOLS_REQUIRE_APPROVAL: " calculator, refund_order,calculator ",
  }));
  assert.deepEqual(config, {
    agent: "llm",
    settings: {
      provider: "anthropic",
      baseUrl: "https://api.anthropic.com/v1",
      apiKey: KEY,
      model: "claude-sonnet-4-5",
      systemPrompt: "Be brief.",
      historyMessages: 0,
      contextTokens: 8000,
      maxSteps: 3,
      idleTimeoutMs: 5000,
    },
    streamFlushMs: 0,
    toolOutputMaxBytes: 1024,
    maxActiveRunsPerUser: 0,
    toolApprovalTimeoutMs: 60_000,
    toolsRequireApproval: ["calculator", "refund_order"],
  });
});

Deno.test("loadConfig() refuses an approval timeout not below the event retention age", () => {
  assert.throws(
    () => loadConfig(env({ TOOL_APPROVAL_TIMEOUT_MS: "3600000" })),
    (error: unknown) =>
      error instanceof ConfigError && error.variable === "TOOL_APPROVAL_TIMEOUT_MS" &&
      /EVENT_RETENTION_SECONDS=3600/.test(error.message) && !error.message.includes("\n"),
  );
  assert.equal(
    loadConfig(env({ TOOL_APPROVAL_TIMEOUT_MS: "3600000", EVENT_RETENTION_SECONDS: "7200" }))
      .llm.toolApprovalTimeoutMs,
    3_600_000,
  );
});

Deno.test("loadLlmConfig() refuses a TOOLS_REQUIRE_APPROVAL entry that is no tool name", () => {
  assert.equal(
    configError({ TOOLS_REQUIRE_APPROVAL: "calculator,rm -rf" }).variable,
    "TOOLS_REQUIRE_APPROVAL",
  );
});

Deno.test("loadLlmConfig() sends openai and anthropic to their official API unless LLM_BASE_URL names a proxy", () => {
  const openai = loadLlmConfig(env({
    AGENT: "llm",
    LLM_PROVIDER: "openai",
    LLM_API_KEY: KEY,
    LLM_MODEL: "gpt-4o-mini",
  }));
  assert.equal(openai.settings?.baseUrl, "https://api.openai.com/v1");
  const proxied = loadLlmConfig(env({
    AGENT: "llm",
    LLM_PROVIDER: "anthropic",
    LLM_API_KEY: KEY,
    LLM_MODEL: "claude-sonnet-4-5",
    LLM_BASE_URL: "https://gateway.internal.example/anthropic/v1",
  }));
  assert.equal(proxied.settings?.baseUrl, "https://gateway.internal.example/anthropic/v1");
});

Deno.test("loadLlmConfig() ignores the LLM_* variables when AGENT is demo", () => {
  const config = loadLlmConfig(env({ AGENT: "demo", LLM_MODEL: "llama3.2", LLM_MAX_STEPS: "x" }));
  assert.equal(config.agent, "demo");
  assert.equal(config.settings, undefined);
});

Deno.test("loadLlmConfig() names the missing, bad or contradictory variable in one line", () => {
  const llm = { AGENT: "llm", LLM_BASE_URL: "http://127.0.0.1:11434/v1", LLM_MODEL: "m" };
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ AGENT: "gpt" }, "AGENT", /demo, llm/],
    [{ LLM_MODEL: "llama3.2" }, "AGENT", /LLM_MODEL is set/],
    [{ LLM_BASE_URL: "http://127.0.0.1:11434/v1" }, "AGENT", /LLM_BASE_URL/],
    [{ AGENT: "llm", LLM_BASE_URL: "http://127.0.0.1:11434/v1" }, "LLM_MODEL", /must be set/],
    [{ AGENT: "llm", LLM_MODEL: "m" }, "LLM_BASE_URL", /openai-compatible/],
    [{ ...llm, LLM_PROVIDER: "ollama" }, "LLM_PROVIDER", /openai-compatible, openai, anthropic/],
    [{ ...llm, LLM_PROVIDER: "openai" }, "LLM_API_KEY", /openai/],
    [{ ...llm, LLM_PROVIDER: "anthropic" }, "LLM_API_KEY", /anthropic/],
    [{ ...llm, LLM_BASE_URL: "127.0.0.1:11434" }, "LLM_BASE_URL", /http/],
    [{ ...llm, LLM_BASE_URL: "ftp://host/v1" }, "LLM_BASE_URL", /http/],
    [{ ...llm, LLM_BASE_URL: "http://host/v1?x=1" }, "LLM_BASE_URL", /query/],
    [{ ...llm, LLM_HISTORY_MESSAGES: "-1" }, "LLM_HISTORY_MESSAGES", /integer/],
    [{ ...llm, LLM_CONTEXT_TOKENS: "0" }, "LLM_CONTEXT_TOKENS", /integer/],
    [{ ...llm, LLM_MAX_STEPS: "0" }, "LLM_MAX_STEPS", /integer/],
    [{ ...llm, LLM_IDLE_TIMEOUT_MS: "1.5" }, "LLM_IDLE_TIMEOUT_MS", /integer/],
    [{ STREAM_FLUSH_MS: "-1" }, "STREAM_FLUSH_MS", /integer/],
    [{ TOOL_OUTPUT_MAX_BYTES: "10" }, "TOOL_OUTPUT_MAX_BYTES", /integer/],
    [{ MAX_ACTIVE_RUNS_PER_USER: "many" }, "MAX_ACTIVE_RUNS_PER_USER", /integer/],
  ];
  for (const [vars, variable, pattern] of cases) {
    const error = configError(vars);
    assert.equal(error.variable, variable, JSON.stringify(vars));
    assert.ok(error.message.includes(variable));
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes("\n"));
  }
});

Deno.test("loadLlmConfig() never puts LLM_API_KEY's value in an error message", () => {
  const badKey = "sk-zebra quokka-0123456789";
  const error = configError({
    AGENT: "llm",
    LLM_BASE_URL: "http://127.0.0.1:11434/v1",
    LLM_MODEL: "m",
    LLM_API_KEY: badKey,
  });
  assert.equal(error.variable, "LLM_API_KEY");
  assert.ok(!error.message.includes(badKey));
  assert.ok(!error.message.includes("zebra"));
  // A later error with a good key set does not echo it either.
  const later = configError({
    AGENT: "llm",
    LLM_BASE_URL: "http://127.0.0.1:11434/v1",
    LLM_MODEL: "m",
    LLM_API_KEY: KEY,
    LLM_MAX_STEPS: "zero",
  });
  assert.ok(!later.message.includes(KEY));
});

Deno.test("loadConfig() carries the agent settings and stops on a bad LLM_* variable", () => {
  const config = loadConfig(env({
    AGENT: "llm",
    LLM_BASE_URL: "http://127.0.0.1:11434/v1",
    LLM_MODEL: "llama3.2",
    MAX_ACTIVE_RUNS_PER_USER: "2",
  }));
  assert.equal(config.llm.settings?.model, "llama3.2");
  assert.equal(config.llm.maxActiveRunsPerUser, 2);
  assert.throws(
    () => loadConfig(env({ AGENT: "llm", LLM_BASE_URL: "http://127.0.0.1:11434/v1" })),
    (error: unknown) => error instanceof ConfigError && error.variable === "LLM_MODEL",
  );
});
