/**
 * Reading environment variables with validation: each section of the configuration
 * (`load_config.ts`, `test_knobs.ts`, and any new one) reads through an {@link EnvReading}, so
 * a bad value always fails the same way: a {@link ConfigError} naming the variable, in one line.
 *
 * @module
 */

/** Reads one variable; `undefined` when unset. */
export type EnvReader = (name: string) => string | undefined;

/** A configuration value is missing or invalid; `message` is one line naming the variable. */
export class ConfigError extends Error {
  /** The environment variable at fault. */
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

/** Validating readers over one environment. */
export interface EnvReading {
  /** `APP_ENV` is `production`. */
  readonly production: boolean;
  /** The trimmed value; `undefined` when unset or empty. */
  read(name: string): string | undefined;
  /**
   * An integer within `[min, max]`, or `fallback` when unset.
   *
   * @throws {ConfigError} naming the variable when the value is not such an integer.
   */
  int(
    name: string,
    fallback: number,
    range: { readonly min: number; readonly max: number },
  ): number;
}

/**
 * Makes the readers over `env`.
 *
 * @param env Reads a variable.
 * @param options Whether the environment is production.
 */
export function envReading(env: EnvReader, options: { production: boolean }): EnvReading {
  const read = (name: string) => {
    const value = env(name)?.trim();
    return value === "" ? undefined : value;
  };
  return {
    production: options.production,
    read,
    int(name, fallback, { min, max }) {
      const raw = read(name);
      if (raw === undefined) return fallback;
      const value = Number(raw);
      if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
        throw new ConfigError(name, `must be an integer from ${min} to ${max}, received "${raw}"`);
      }
      return value;
    },
  };
}
