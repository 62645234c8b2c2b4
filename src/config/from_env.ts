/**
 * The one place that reads the process environment: {@link fromEnv} for an embedding
 * application, {@link loadEnvConfig} for `deno task start`. Nothing else in agentsocket reads
 * `Deno.env`, so a host application's own `DATABASE_URL` or `PORT` is never picked up unless
 * it asks for it.
 *
 * @module
 */
import type { AgentsocketSettings } from "./agentsocket_settings.ts";
import { ENV_NAMING } from "./agentsocket_options_error.ts";
import type { EnvReader } from "./env_reader.ts";
import { loadConfig, readEnvSettings } from "./load_config.ts";
import type { Config } from "./load_config.ts";
import { resolveSettings } from "./resolve_settings.ts";

/** Options of {@link fromEnv}. */
export interface FromEnvOptions {
  /** Reads a variable. @default Deno.env.get (needs `--allow-env`) */
  readonly env?: EnvReader;
}

/**
 * Reads the settings from the environment variables `deno task start` reads (the README lists
 * them), validated: spread them into the factory's options and add your own.
 *
 * @example Settings from the environment, the agent from code
 * ```ts ignore
 * const socket = await createAgentsocket({ ...fromEnv(), agent: myAgent });
 * ```
 *
 * @returns The settings that are set; unset ones are left out, so the factory's defaults apply.
 * @throws {ConfigError} naming the first variable with a bad value.
 */
export function fromEnv(options: FromEnvOptions = {}): AgentsocketSettings {
  const { settings } = readEnvSettings(options.env ?? denoEnv);
  resolveSettings(settings, ENV_NAMING); // validates now, naming the variable
  return settings;
}

/**
 * The configuration of `deno task start`: every setting, `PORT`, `HOST` and the test knobs.
 *
 * @throws {ConfigError} naming the first variable with a bad value.
 */
export function loadEnvConfig(): Config {
  return loadConfig(denoEnv);
}

function denoEnv(name: string): string | undefined {
  return Deno.env.get(name);
}
