/**
 * Configuration: {@link AgentsocketSettings} as plain data, validated once by
 * `resolveSettings()` whether they come from the environment (`loadConfig()`, `fromEnv()`: a
 * bad value is a `ConfigError` naming the variable) or from an embedding application (an
 * `AgentsocketOptionsError` naming the option). `docs/protocol.md#limits` and the README list
 * the settings.
 *
 * @module
 */
export * from "./agentsocket_options_error.ts";
export * from "./agentsocket_settings.ts";
export * from "./env_reader.ts";
export * from "./from_env.ts";
export * from "./llm_config.ts";
export * from "./load_config.ts";
export * from "./resolve_settings.ts";
export * from "./test_knobs.ts";
