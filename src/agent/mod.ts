/**
 * Agents: the agent port (v2), the embedded demo agent with its tools, and the model-backed
 * agent (`llm/`). {@link createAgent} builds the one the configuration names.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { Agent } from "./agent.ts";
import { DemoAgent } from "./demo_agent.ts";
import { createLlmAgent } from "./llm/mod.ts";
import type { LlmSettings } from "./llm/mod.ts";

export * from "./agent.ts";
export * from "./demo_agent.ts";
export * from "./demo_tools.ts";

/** What {@link createAgent} reads of the configuration. */
export interface AgentConfig {
  /** `AGENT`: the demo agent or a model. */
  readonly agent: "demo" | "llm";
  /** The model agent's settings; present when `agent` is `llm`. */
  readonly settings?: LlmSettings;
  /** The demo agent's pause before each step, in ms. */
  readonly stepDelayMs: number;
  /** How many `agent_thinking` events a demo run emits. */
  readonly thinkingSteps: number;
}

/** What every agent is given. */
export interface AgentDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Builds the agent the configuration names: one line per kind of agent.
 *
 * @param config The agent's settings.
 * @param deps The clock and the logger.
 */
export function createAgent(config: AgentConfig, deps: AgentDeps): Agent {
  if (config.agent === "llm" && config.settings) return createLlmAgent(config.settings, deps);
  const { stepDelayMs, thinkingSteps } = config;
  return new DemoAgent({ clock: deps.clock, stepDelayMs, thinkingSteps });
}
