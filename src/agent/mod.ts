/**
 * Agents: the agent port (v2) and the embedded demo agent with its tools.
 *
 * @module
 */
export * from "./agent.ts";
export * from "./demo_agent.ts";
export * from "./demo_tools.ts";
