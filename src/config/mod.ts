/**
 * Configuration from environment variables, validated at start (`docs/protocol.md#limits`
 * and the README list them): `loadConfig()` reads every section; a bad value is a
 * `ConfigError` naming the variable in one line.
 *
 * @module
 */
export * from "./env_reader.ts";
export * from "./load_config.ts";
export * from "./test_knobs.ts";
export * from "./llm_config.ts";
