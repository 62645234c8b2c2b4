/**
 * Configuration from environment variables, validated at start (SPEC §1).
 *
 * @module
 */
export * from "./load_config.ts";
export * from "./llm_config.ts";
