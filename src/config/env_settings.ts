/**
 * Turning one environment variable into the setting it holds: an integer setting must hold an
 * integer (a {@link ConfigError} naming the variable otherwise); the rest are strings. Ranges
 * and rules are checked later, once, by `resolve_settings.ts`.
 *
 * @module
 */
import { INTEGER_SETTINGS, SETTING_VARIABLES } from "./agentsocket_settings.ts";
import type { SettingPath } from "./agentsocket_settings.ts";
import { ConfigError } from "./env_reader.ts";

/**
 * Reads the variable of `path` into `group` under the path's last key, when it is set.
 *
 * @param group The object the setting goes into (`limits` for `limits.maxFrameBytes`).
 * @param path The setting.
 * @param read Reads a variable, trimmed; `undefined` when unset or empty.
 * @param options `secret`: never put the value in a message.
 * @throws {ConfigError} when an integer setting's variable does not hold an integer.
 */
export function envSetting(
  group: Record<string, unknown>,
  path: SettingPath,
  read: (name: string) => string | undefined,
  options: { secret?: boolean } = {},
): void {
  const variable = SETTING_VARIABLES[path];
  const raw = read(variable);
  if (raw === undefined) return;
  const key = path.slice(path.lastIndexOf(".") + 1);
  const range = (INTEGER_SETTINGS as Partial<Record<SettingPath, { min: number; max: number }>>)[
    path
  ];
  if (range === undefined) {
    group[key] = raw;
    return;
  }
  const value = Number(raw);
  if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value)) {
    throw new ConfigError(
      variable,
      `must be an integer from ${range.min} to ${range.max}, received ${
        options.secret ? "another value" : `"${raw}"`
      }`,
    );
  }
  group[key] = value;
}
