/**
 * The error an embedding application gets for a bad option: typed, one line, naming the
 * option the way {@link ConfigError} names the environment variable. The factory throws it;
 * it never exits the process.
 *
 * @module
 */
import { ConfigError } from "./env_reader.ts";
import { SETTING_VARIABLES } from "./agentsocket_settings.ts";
import type { SettingNaming, SettingPath } from "./agentsocket_settings.ts";

/** An option given to the factory is missing, invalid or contradicts another. */
export class AgentsocketOptionsError extends TypeError {
  /** The option at fault, as a path (`limits.maxFrameBytes`, `tools`, `beforeRun`). */
  readonly option: string;
  constructor(option: string, message: string, options?: ErrorOptions) {
    super(`Invalid option: ${option} ${message}`, options);
    this.name = "AgentsocketOptionsError";
    this.option = option;
  }
}

/** Names settings as options, for values the application passed. */
export const OPTION_NAMING: SettingNaming = {
  name: (path) => path,
  error: (path, message) => new AgentsocketOptionsError(path, message),
};

/** Names settings as environment variables, for values `fromEnv()` read. */
export const ENV_NAMING: SettingNaming = {
  name: (path: SettingPath) => SETTING_VARIABLES[path],
  error: (path, message) => new ConfigError(SETTING_VARIABLES[path], message),
};
