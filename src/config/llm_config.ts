/**
 * The agent behind the chats and its limits, from the environment: `AGENT` (`demo` or `llm`),
 * the `LLM_*` variables of the model agent, and the run knobs every agent shares
 * (`STREAM_FLUSH_MS`, `TOOL_OUTPUT_MAX_BYTES`, `MAX_ACTIVE_RUNS_PER_USER`,
 * `TOOL_APPROVAL_TIMEOUT_MS`, `RUN_LEASE_MS`, `TOOLS_REQUIRE_APPROVAL`). A missing or
 * contradictory setting is a {@link ConfigError} naming the variable; no message ever holds
 * `LLM_API_KEY`'s value.
 *
 * @module
 */
import { ENV_NAMING } from "./agentsocket_options_error.ts";
import { SETTING_VARIABLES } from "./agentsocket_settings.ts";
import type { AgentsocketSettings } from "./agentsocket_settings.ts";
import { ConfigError, type EnvReader } from "./env_reader.ts";
import { envSetting } from "./env_settings.ts";
import { AGENT_KINDS, resolveLlmSettings } from "./resolve_settings.ts";
import type { LlmConfig } from "./resolve_settings.ts";

export { AGENT_KINDS } from "./resolve_settings.ts";
export type { AgentKind, LlmConfig } from "./resolve_settings.ts";

/** The settings of the agent part that the environment holds. */
export type AgentEnvSettings = Pick<AgentsocketSettings, "llm" | "runs" | "toolsRequireApproval">;

const LLM_PATHS = [
  "llm.provider",
  "llm.baseUrl",
  "llm.apiKey",
  "llm.model",
  "llm.systemPrompt",
  "llm.historyMessages",
  "llm.contextTokens",
  "llm.maxSteps",
  "llm.idleTimeoutMs",
] as const;

const RUN_PATHS = [
  "runs.streamFlushMs",
  "runs.toolOutputMaxBytes",
  "runs.maxActiveRunsPerUser",
  "runs.approvalTimeoutMs",
  "runs.leaseMs",
] as const;

/**
 * Reads `AGENT`, the `LLM_*` variables and the run knobs as settings, unvalidated beyond their
 * syntax (an integer variable must hold an integer).
 *
 * @param read Reads a variable.
 * @throws {ConfigError} naming `AGENT` when it is bad, or unset while an `LLM_*` variable is set.
 */
export function readAgentEnv(read: EnvReader): AgentEnvSettings {
  const trimmed = (name: string) => {
    const value = read(name)?.trim();
    return value === "" ? undefined : value;
  };
  const runs: Record<string, unknown> = {};
  for (const path of RUN_PATHS) envSetting(runs, path, trimmed);
  const toolsRequireApproval = trimmed(SETTING_VARIABLES.toolsRequireApproval)?.split(",");
  const shared = { runs, ...(toolsRequireApproval ? { toolsRequireApproval } : {}) };

  const agent = trimmed("AGENT");
  if (agent === undefined) {
    const stray = LLM_PATHS.map((path) => SETTING_VARIABLES[path]).find((name) =>
      trimmed(name) !== undefined
    );
    if (stray !== undefined) {
      throw new ConfigError(
        "AGENT",
        `must be set (to "llm", or to "demo" to keep the demo agent) when ${stray} is set`,
      );
    }
    return shared;
  }
  if (!(AGENT_KINDS as readonly string[]).includes(agent)) {
    throw new ConfigError("AGENT", `must be one of ${AGENT_KINDS.join(", ")}, received "${agent}"`);
  }
  if (agent === "demo") return shared;
  const llm: Record<string, unknown> = {};
  for (const path of LLM_PATHS) envSetting(llm, path, trimmed, { secret: path === "llm.apiKey" });
  return { ...shared, llm };
}

/**
 * Reads and validates `AGENT`, the `LLM_*` variables and the shared run knobs.
 *
 * @param read Reads a variable.
 * @returns The validated settings.
 * @throws {ConfigError} naming the first variable that is missing, bad or contradictory.
 */
export function loadLlmConfig(read: EnvReader): LlmConfig {
  return resolveLlmSettings(readAgentEnv(read), ENV_NAMING);
}
