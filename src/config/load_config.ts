/**
 * Reads the configuration from environment variables. The variables become
 * {@link AgentsocketSettings} (what `fromEnv()` hands an embedding application) and are then
 * validated by the same rules as options are; a bad value throws a {@link ConfigError} whose
 * message is one line naming the variable, which `main.ts` prints before exiting.
 *
 * @module
 */
import { ENV_NAMING } from "./agentsocket_options_error.ts";
import { SETTING_VARIABLES } from "./agentsocket_settings.ts";
import type { AgentsocketSettings, SettingPath } from "./agentsocket_settings.ts";
import { envReading } from "./env_reader.ts";
import type { EnvReader } from "./env_reader.ts";
import { envSetting } from "./env_settings.ts";
import { readAgentEnv } from "./llm_config.ts";
import { resolveSettings } from "./resolve_settings.ts";
import type { ResolvedSettings } from "./resolve_settings.ts";
import { readTestingConfig } from "./test_knobs.ts";
import type { TestingConfig } from "./test_knobs.ts";

export type { AppEnv } from "./agentsocket_settings.ts";
export type { JwtKeySource, ResolvedSettings } from "./resolve_settings.ts";

/** What one instance is built from: the settings and the test knobs (never options). */
export interface ServerConfig extends ResolvedSettings {
  /** Test-only knobs; all zero/empty unless set, and refused in production. */
  readonly testing: TestingConfig;
}

/** The configuration of `deno task start`: an instance's, and where it listens. */
export interface Config extends ServerConfig {
  readonly port: number;
  readonly host: string;
}

/** What the environment holds, read but not yet validated beyond syntax. */
export interface EnvSettings {
  readonly settings: AgentsocketSettings;
  readonly port: number;
  readonly host: string;
  readonly testing: TestingConfig;
}

/** The settings read as plain strings or integers, outside the agent part. */
const PLAIN_PATHS: readonly SettingPath[] = [
  "appEnv",
  "instanceId",
  "logLevel",
  "jwt.secret",
  "jwt.jwksUrl",
  "jwt.publicKey",
  "jwt.issuer",
  "jwt.audience",
  "jwt.clockToleranceSeconds",
  "databaseUrl",
  "redisUrl",
  "redisKeyPrefix",
  "limits.handshakeTimeoutMs",
  "limits.maxFrameBytes",
  "limits.maxPreReadyFrames",
  "limits.maxConnectionsPerUser",
  "limits.maxConnections",
  "limits.slowConsumerBytes",
  "limits.slowConsumerTimeoutMs",
  "limits.rateLimitPerSecond",
  "limits.rateLimitBurst",
  "limits.closeLingerMs",
  "chatIdTtlSeconds",
  "retention.count",
  "retention.seconds",
  "demo.stepDelayMs",
  "demo.thinkingSteps",
  "drain.timeoutMs",
  "drain.spreadMs",
  "heartbeatSeconds",
  "readinessProbeIntervalMs",
];

/**
 * Reads every variable into settings, plus `PORT`, `HOST` and the test knobs.
 *
 * @param env Reads a variable.
 * @throws {ConfigError} naming the first variable whose value cannot be read (an integer
 *   setting that is no integer, an unknown `AGENT`, a test knob in production).
 */
export function readEnvSettings(env: EnvReader): EnvSettings {
  const read = envReading(env, { production: false }).read;
  const root: Record<string, unknown> = {};
  for (const path of PLAIN_PATHS) {
    const dot = path.indexOf(".");
    const group = dot < 0 ? root : (root[path.slice(0, dot)] ??= {}) as Record<string, unknown>;
    envSetting(group, path, read, { secret: path === "jwt.secret" });
  }
  const jwt = root.jwt as Record<string, unknown> | undefined;
  // A PEM key in one line: "\n" written as two characters.
  if (typeof jwt?.publicKey === "string") jwt.publicKey = jwt.publicKey.replaceAll("\\n", "\n");
  const origins = read(SETTING_VARIABLES.allowedOrigins);
  if (origins !== undefined) root.allowedOrigins = origins.split(",");

  const production = read("APP_ENV") === "production";
  const reading = envReading(env, { production });
  return {
    settings: { ...root, ...readAgentEnv(env) } as AgentsocketSettings,
    port: reading.int("PORT", 8000, { min: 0, max: 65535 }),
    host: read("HOST") ?? "0.0.0.0",
    testing: readTestingConfig(reading),
  };
}

/**
 * Builds the configuration from environment variables.
 *
 * @param env Reads a variable (`fromEnv()` passes `Deno.env.get`; nothing else reads it).
 * @returns The validated configuration.
 * @throws {ConfigError} naming the first variable with a bad value.
 */
export function loadConfig(env: EnvReader): Config {
  const { settings, port, host, testing } = readEnvSettings(env);
  return { ...resolveSettings(settings, ENV_NAMING), port, host, testing };
}
