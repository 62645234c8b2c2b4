/**
 * Runs: the orchestrator that turns a chat into a run, drives the agent and its tool calls,
 * publishes the run's events and ends every run exactly once, across instances and outages.
 *
 * @module
 */
export * from "./run_orchestrator.ts";
export { cutOutput } from "./tool_runner.ts";
export type { ApprovalDecision, ApprovalPort, OpenCall } from "./tool_runner.ts";
export * from "./run_hooks.ts";
