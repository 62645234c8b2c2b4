/**
 * The agent behind the chats and its limits: `AGENT` (`demo` or `llm`), the `LLM_*` variables
 * of the model agent, and the run knobs every agent shares (`STREAM_FLUSH_MS`,
 * `TOOL_OUTPUT_MAX_BYTES`, `MAX_ACTIVE_RUNS_PER_USER`, `TOOL_APPROVAL_TIMEOUT_MS`,
 * `TOOLS_REQUIRE_APPROVAL`). A missing or contradictory setting is a
 * {@link ConfigError} naming the variable; no message ever holds `LLM_API_KEY`'s value.
 *
 * @module
 */
import { LLM_PROVIDERS, type LlmProvider, type LlmSettings } from "../agent/llm/mod.ts";
import { ConfigError, type EnvReader } from "./load_config.ts";

/** The agents `AGENT` can choose. */
export const AGENT_KINDS = ["demo", "llm"] as const;

/** One of {@link AGENT_KINDS}. */
export type AgentKind = typeof AGENT_KINDS[number];

/** The agent and the run limits, validated. */
export interface LlmConfig {
  /** `AGENT`. @default "demo" */
  readonly agent: AgentKind;
  /** The model agent's settings; set exactly when `agent` is `llm`. */
  readonly settings?: LlmSettings;
  /** `STREAM_FLUSH_MS`: pieces within this window after the first are one event. @default 40 */
  readonly streamFlushMs: number;
  /** `TOOL_OUTPUT_MAX_BYTES`: a tool output is cut to this, for the model and the event.
   *  @default 16384 */
  readonly toolOutputMaxBytes: number;
  /** `MAX_ACTIVE_RUNS_PER_USER`: runs in flight per user; 0 = no limit. @default 4 */
  readonly maxActiveRunsPerUser: number;
  /**
   * `TOOL_APPROVAL_TIMEOUT_MS`: how long a tool call waits for a person (below the event
   * retention age, checked by `loadConfig`). @default 300000
   */
  readonly toolApprovalTimeoutMs: number;
  /**
   * `TOOLS_REQUIRE_APPROVAL`: names of tools that need approval on top of those marked in
   * code; a name no tool has stops the start (checked when the tools are registered).
   * @default []
   */
  readonly toolsRequireApproval: readonly string[];
}

/** The `LLM_*` variables; setting any of them without `AGENT` is a contradiction. */
const LLM_VARIABLES = [
  "LLM_PROVIDER",
  "LLM_BASE_URL",
  "LLM_API_KEY",
  "LLM_MODEL",
  "LLM_SYSTEM_PROMPT",
  "LLM_HISTORY_MESSAGES",
  "LLM_CONTEXT_TOKENS",
  "LLM_MAX_STEPS",
  "LLM_IDLE_TIMEOUT_MS",
] as const;

/** The official API roots, sent explicitly so the SDK never falls back to its own variables. */
const OFFICIAL_BASE_URLS: Readonly<Record<Exclude<LlmProvider, "openai-compatible">, string>> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com/v1",
};

/**
 * Reads `AGENT`, the `LLM_*` variables and the shared run knobs.
 *
 * @param read Reads a variable, trimmed; `undefined` when unset or empty.
 * @returns The validated settings.
 * @throws {ConfigError} naming the first variable that is missing, bad or contradictory.
 */
export function loadLlmConfig(read: EnvReader): LlmConfig {
  const int = integerReader(read);
  const shared = {
    streamFlushMs: int("STREAM_FLUSH_MS", 40, 0, 60_000),
    toolOutputMaxBytes: int("TOOL_OUTPUT_MAX_BYTES", 16_384, 64, 67_108_864),
    maxActiveRunsPerUser: int("MAX_ACTIVE_RUNS_PER_USER", 4, 0, 1_000_000),
    toolApprovalTimeoutMs: int("TOOL_APPROVAL_TIMEOUT_MS", 300_000, 1_000, 86_400_000),
    toolsRequireApproval: nameList(read, "TOOLS_REQUIRE_APPROVAL"),
  };
  const agentRaw = read("AGENT");
  if (agentRaw === undefined) {
    const stray = LLM_VARIABLES.find((name) => read(name) !== undefined);
    if (stray !== undefined) {
      throw new ConfigError(
        "AGENT",
        `must be set (to "llm", or to "demo" to keep the demo agent) when ${stray} is set`,
      );
    }
    return { agent: "demo", ...shared };
  }
  if (!(AGENT_KINDS as readonly string[]).includes(agentRaw)) {
    throw new ConfigError(
      "AGENT",
      `must be one of ${AGENT_KINDS.join(", ")}, received "${agentRaw}"`,
    );
  }
  if (agentRaw === "demo") return { agent: "demo", ...shared };
  return { agent: "llm", settings: llmSettings(read, int), ...shared };
}

function llmSettings(read: EnvReader, int: IntegerReader): LlmSettings {
  const providerRaw = read("LLM_PROVIDER") ?? "openai-compatible";
  if (!(LLM_PROVIDERS as readonly string[]).includes(providerRaw)) {
    throw new ConfigError(
      "LLM_PROVIDER",
      `must be one of ${LLM_PROVIDERS.join(", ")}, received "${providerRaw}"`,
    );
  }
  const provider = providerRaw as LlmProvider;
  const model = read("LLM_MODEL");
  if (model === undefined) {
    throw new ConfigError("LLM_MODEL", "must be set when AGENT is llm (e.g. llama3.2)");
  }
  const baseUrlRaw = read("LLM_BASE_URL");
  if (baseUrlRaw === undefined && provider === "openai-compatible") {
    throw new ConfigError(
      "LLM_BASE_URL",
      "must be set when LLM_PROVIDER is openai-compatible (the API root with /v1, e.g. http://127.0.0.1:11434/v1)",
    );
  }
  const baseUrl = baseUrlRaw === undefined
    ? OFFICIAL_BASE_URLS[provider as Exclude<LlmProvider, "openai-compatible">]
    : apiRoot(baseUrlRaw);
  const apiKey = read("LLM_API_KEY");
  if (apiKey === undefined && provider !== "openai-compatible") {
    throw new ConfigError("LLM_API_KEY", `must be set when LLM_PROVIDER is ${provider}`);
  }
  // The value is never echoed: a message names the variable only.
  if (apiKey !== undefined && !/^[\x21-\x7e]+$/.test(apiKey)) {
    throw new ConfigError("LLM_API_KEY", "must be printable ASCII without spaces");
  }
  return {
    provider,
    baseUrl,
    apiKey,
    model,
    systemPrompt: read("LLM_SYSTEM_PROMPT"),
    historyMessages: int("LLM_HISTORY_MESSAGES", 20, 0, 10_000),
    contextTokens: int("LLM_CONTEXT_TOKENS", 16_000, 1, 100_000_000),
    maxSteps: int("LLM_MAX_STEPS", 8, 1, 1_000),
    idleTimeoutMs: int("LLM_IDLE_TIMEOUT_MS", 60_000, 10, 3_600_000),
  };
}

function apiRoot(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("LLM_BASE_URL", "must be a valid http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(
      "LLM_BASE_URL",
      `must use http:// or https://, received "${url.protocol}//"`,
    );
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigError("LLM_BASE_URL", "must be an API root without a query or a fragment");
  }
  return raw.replace(/\/+$/, "");
}

type IntegerReader = (name: string, fallback: number, min: number, max: number) => number;

function integerReader(read: EnvReader): IntegerReader {
  return (name, fallback, min, max) => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(name, `must be an integer from ${min} to ${max}, received "${raw}"`);
    }
    return value;
  };
}

/** A comma list of tool names; each must look like a tool name. */
function nameList(read: EnvReader, variable: string): string[] {
  const raw = read(variable);
  if (raw === undefined) return [];
  const names = raw.split(",").map((name) => name.trim()).filter((name) => name !== "");
  for (const name of names) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw new ConfigError(
        variable,
        `must be a comma list of tool names (letters, digits, "_", "-"), received "${name}"`,
      );
    }
  }
  return [...new Set(names)];
}
