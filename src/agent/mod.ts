/**
 * Agents and the run orchestrator (`docs/protocol.md#agents-and-tools`): the agent port, the
 * embedded demo agent, and the orchestrator that turns an agent's steps into run events.
 *
 * {@link createAgent} builds the agent the configuration names.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { Agent } from "./agent.ts";
import { DemoAgent } from "./demo_agent.ts";

export * from "./agent.ts";
export * from "./calculator.ts";
export * from "./demo_agent.ts";
export * from "./run_orchestrator.ts";

/** What {@link createAgent} reads of the configuration. */
export interface AgentConfig {
  /** The demo agent's pause before each step, in ms. */
  readonly stepDelayMs: number;
  /** How many `agent_thinking` events a demo run emits. */
  readonly thinkingSteps: number;
}

/** What every agent is given. */
export interface AgentDeps {
  readonly clock: Clock;
}

/**
 * Builds the agent the configuration names: one line per kind of agent.
 *
 * @param config The agent's settings.
 * @param deps The clock.
 */
export function createAgent(config: AgentConfig, deps: AgentDeps): Promise<Agent> {
  return Promise.resolve(
    new DemoAgent({
      clock: deps.clock,
      stepDelayMs: config.stepDelayMs,
      thinkingSteps: config.thinkingSteps,
    }),
  );
}
