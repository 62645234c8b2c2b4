/**
 * The model-backed agent (`AGENT=llm`): a real language model answers through the AI SDK,
 * streaming, with the thread's history as context and the run's tools.
 *
 * @module
 */
export * from "./llm_settings.ts";
export * from "./build_context.ts";
export * from "./model_failure.ts";
export * from "./idle_watch.ts";
export * from "./llm_agent.ts";
