/**
 * The settings of one agentsocket instance, as plain data: what `fromEnv()` reads from the
 * environment and what an embedding application passes to the factory. Every setting has one
 * option path (`limits.maxFrameBytes`) and one environment variable (`MAX_FRAME_BYTES`), listed
 * once in {@link SETTING_VARIABLES}, so an error names the setting the way it was given.
 *
 * @module
 */
import type { LlmProvider } from "../agent/llm/mod.ts";
import type { LogLevel } from "../_util/log.ts";

/** `development` (the default) or `production`. */
export type AppEnv = "development" | "production";

/** How tokens are verified: exactly one of `secret`, `jwksUrl`, `publicKey` (none: dev only). */
export interface JwtSettings {
  /** HS256 secret, at least 32 bytes (`JWT_SECRET`). */
  readonly secret?: string;
  /** A JWKS endpoint for RS256, ES256 or EdDSA (`JWT_JWKS_URL`). */
  readonly jwksUrl?: string;
  /** A PEM public key or a JWK in JSON (`JWT_PUBLIC_KEY`). */
  readonly publicKey?: string;
  /** Checked when set (`JWT_ISSUER`). */
  readonly issuer?: string;
  /** Checked when set (`JWT_AUDIENCE`). */
  readonly audience?: string;
  /** Leeway for `exp` (`JWT_CLOCK_TOLERANCE_SECONDS`). @default 5 */
  readonly clockToleranceSeconds?: number;
}

/** Per-connection and per-process limits (docs/protocol.md#limits). */
export interface LimitSettings {
  /** From open to `ready`; past it the socket closes 1013. @default 5000 */
  readonly handshakeTimeoutMs?: number;
  /** Largest client frame; a larger one closes 1009. @default 65536 */
  readonly maxFrameBytes?: number;
  /** Frames queued before `ready`; one more closes 4429. @default 64 */
  readonly maxPreReadyFrames?: number;
  /** Connections per user, across instances with Redis; one more closes 4429. @default 10 */
  readonly maxConnectionsPerUser?: number;
  /** Connections this process holds; one more closes 1013. @default the open-files limit less a margin */
  readonly maxConnections?: number;
  /** Bytes a slow client may leave unread before it is closed 1008. @default 1048576 */
  readonly slowConsumerBytes?: number;
  /** How long a client may stay over `slowConsumerBytes`. @default 10000 */
  readonly slowConsumerTimeoutMs?: number;
  /** Frames per second per connection after `hello`. @default 50 */
  readonly rateLimitPerSecond?: number;
  /** Burst of frames above the rate. @default 100 */
  readonly rateLimitBurst?: number;
  /** How long a close waits for a client that is still sending (0: at once). @default 250 */
  readonly closeLingerMs?: number;
}

/** The model-backed agent (docs/protocol.md#agents-and-tools); `model` is required. */
export interface LlmAgentSettings {
  /** @default "openai-compatible" */
  readonly provider?: LlmProvider;
  /** The API root, `/v1` included; required for `openai-compatible`. */
  readonly baseUrl?: string;
  /** Required for `openai` and `anthropic`; never logged. */
  readonly apiKey?: string;
  /** The model name, as the provider knows it. */
  readonly model?: string;
  readonly systemPrompt?: string;
  /** @default 20 */
  readonly historyMessages?: number;
  /** @default 16000 */
  readonly contextTokens?: number;
  /** @default 8 */
  readonly maxSteps?: number;
  /** @default 60000 */
  readonly idleTimeoutMs?: number;
}

/** Limits every run shares, whichever agent runs it. */
export interface RunSettings {
  /** Reply pieces within this window after the first are one event. @default 40 */
  readonly streamFlushMs?: number;
  /** A tool's output is cut to this many bytes. @default 16384 */
  readonly toolOutputMaxBytes?: number;
  /** Runs in flight per user (0: no limit); one more gets `too_many_runs`. @default 4 */
  readonly maxActiveRunsPerUser?: number;
  /** How long a tool call waits for a person; below the retention age. @default 300000 */
  readonly approvalTimeoutMs?: number;
  /** A run's lease; another instance ends it `interrupted` once it lapses. @default 10000 */
  readonly leaseMs?: number;
}

/** Everything an instance is configured with, as plain data; every field is optional. */
export interface AgentsocketSettings {
  /** `production` requires real JWT configuration and turns dev tokens off. @default "development" */
  readonly appEnv?: AppEnv;
  /** Names this instance as the owner of its runs. @default a random UUID per instance */
  readonly instanceId?: string;
  /** The lowest level logged (JSON lines on stderr). @default "info" */
  readonly logLevel?: LogLevel;
  readonly jwt?: JwtSettings;
  /** PostgreSQL; absent: the in-memory store. */
  readonly databaseUrl?: string;
  /** Redis; absent: the in-memory event engine. */
  readonly redisUrl?: string;
  /** Every Redis key and channel starts with it. @default "agentsocket" */
  readonly redisKeyPrefix?: string;
  /** Origins allowed to upgrade (`*`: any). @default any in development, the request's own in production */
  readonly allowedOrigins?: readonly string[];
  readonly limits?: LimitSettings;
  /** How long a chat id stays an idempotency key. @default 86400 */
  readonly chatIdTtlSeconds?: number;
  /** How much of each user's event log is kept (events of runs in flight are always kept). */
  readonly retention?: { readonly count?: number; readonly seconds?: number };
  /** The demo agent's pacing: a pause before each step, and how many thoughts it publishes. */
  readonly demo?: { readonly stepDelayMs?: number; readonly thinkingSteps?: number };
  /** The model agent; when set (and no agent object is given), a model answers. */
  readonly llm?: LlmAgentSettings;
  readonly runs?: RunSettings;
  /** Tools that need approval on top of those marked in code; a name no tool has is an error. */
  readonly toolsRequireApproval?: readonly string[];
  /** How long a drain lets runs finish, and over how long it spreads the closes. */
  readonly drain?: { readonly timeoutMs?: number; readonly spreadMs?: number };
  /** Seconds between pings of an idle socket (0: none). @default 30 */
  readonly heartbeatSeconds?: number;
  /** How often the dependencies are probed for readiness. @default 1000 */
  readonly readinessProbeIntervalMs?: number;
}

/** The environment variable of every setting, by option path. */
export const SETTING_VARIABLES = {
  appEnv: "APP_ENV",
  instanceId: "INSTANCE_ID",
  logLevel: "LOG_LEVEL",
  "jwt.secret": "JWT_SECRET",
  "jwt.jwksUrl": "JWT_JWKS_URL",
  "jwt.publicKey": "JWT_PUBLIC_KEY",
  "jwt.issuer": "JWT_ISSUER",
  "jwt.audience": "JWT_AUDIENCE",
  "jwt.clockToleranceSeconds": "JWT_CLOCK_TOLERANCE_SECONDS",
  databaseUrl: "DATABASE_URL",
  redisUrl: "REDIS_URL",
  redisKeyPrefix: "REDIS_KEY_PREFIX",
  allowedOrigins: "ALLOWED_ORIGINS",
  "limits.handshakeTimeoutMs": "HANDSHAKE_TIMEOUT_MS",
  "limits.maxFrameBytes": "MAX_FRAME_BYTES",
  "limits.maxPreReadyFrames": "MAX_PRE_READY_FRAMES",
  "limits.maxConnectionsPerUser": "MAX_CONNECTIONS_PER_USER",
  "limits.maxConnections": "MAX_CONNECTIONS",
  "limits.slowConsumerBytes": "SLOW_CONSUMER_BYTES",
  "limits.slowConsumerTimeoutMs": "SLOW_CONSUMER_TIMEOUT_MS",
  "limits.rateLimitPerSecond": "RATE_LIMIT_PER_SECOND",
  "limits.rateLimitBurst": "RATE_LIMIT_BURST",
  "limits.closeLingerMs": "CLOSE_LINGER_MS",
  chatIdTtlSeconds: "CHAT_ID_TTL_SECONDS",
  "retention.count": "EVENT_RETENTION_COUNT",
  "retention.seconds": "EVENT_RETENTION_SECONDS",
  "demo.stepDelayMs": "AGENT_STEP_DELAY_MS",
  "demo.thinkingSteps": "AGENT_THINKING_STEPS",
  llm: "AGENT",
  "llm.provider": "LLM_PROVIDER",
  "llm.baseUrl": "LLM_BASE_URL",
  "llm.apiKey": "LLM_API_KEY",
  "llm.model": "LLM_MODEL",
  "llm.systemPrompt": "LLM_SYSTEM_PROMPT",
  "llm.historyMessages": "LLM_HISTORY_MESSAGES",
  "llm.contextTokens": "LLM_CONTEXT_TOKENS",
  "llm.maxSteps": "LLM_MAX_STEPS",
  "llm.idleTimeoutMs": "LLM_IDLE_TIMEOUT_MS",
  "runs.streamFlushMs": "STREAM_FLUSH_MS",
  "runs.toolOutputMaxBytes": "TOOL_OUTPUT_MAX_BYTES",
  "runs.maxActiveRunsPerUser": "MAX_ACTIVE_RUNS_PER_USER",
  "runs.approvalTimeoutMs": "TOOL_APPROVAL_TIMEOUT_MS",
  "runs.leaseMs": "RUN_LEASE_MS",
  toolsRequireApproval: "TOOLS_REQUIRE_APPROVAL",
  "drain.timeoutMs": "DRAIN_TIMEOUT_MS",
  "drain.spreadMs": "DRAIN_SPREAD_MS",
  heartbeatSeconds: "HEARTBEAT_SECONDS",
  readinessProbeIntervalMs: "READINESS_PROBE_INTERVAL_MS",
} as const;

/** A setting's option path, e.g. `limits.maxFrameBytes`. */
export type SettingPath = keyof typeof SETTING_VARIABLES;

/** An integer setting: its default and its inclusive range. */
export interface IntegerSetting {
  /** `undefined`: no default (the setting stays unset). */
  readonly fallback: number | undefined;
  readonly min: number;
  readonly max: number;
}

/** Every integer setting, by option path. */
export const INTEGER_SETTINGS = {
  "jwt.clockToleranceSeconds": { fallback: 5, min: 0, max: 300 },
  "limits.handshakeTimeoutMs": { fallback: 5_000, min: 100, max: 120_000 },
  "limits.maxFrameBytes": { fallback: 65_536, min: 1_024, max: 16_777_216 },
  "limits.maxPreReadyFrames": { fallback: 64, min: 1, max: 10_000 },
  "limits.maxConnectionsPerUser": { fallback: 10, min: 1, max: 100_000 },
  "limits.maxConnections": { fallback: undefined, min: 1, max: 10_000_000 },
  "limits.slowConsumerBytes": { fallback: 1_048_576, min: 16_384, max: 1_073_741_824 },
  "limits.slowConsumerTimeoutMs": { fallback: 10_000, min: 100, max: 600_000 },
  "limits.rateLimitPerSecond": { fallback: 50, min: 1, max: 1_000_000 },
  "limits.rateLimitBurst": { fallback: 100, min: 1, max: 1_000_000 },
  "limits.closeLingerMs": { fallback: 250, min: 0, max: 10_000 },
  chatIdTtlSeconds: { fallback: 86_400, min: 1, max: 31_536_000 },
  "retention.count": { fallback: 10_000, min: 10, max: 10_000_000 },
  "retention.seconds": { fallback: 3_600, min: 10, max: 31_536_000 },
  "demo.stepDelayMs": { fallback: 250, min: 0, max: 600_000 },
  "demo.thinkingSteps": { fallback: 1, min: 1, max: 1_000_000 },
  "llm.historyMessages": { fallback: 20, min: 0, max: 10_000 },
  "llm.contextTokens": { fallback: 16_000, min: 1, max: 100_000_000 },
  "llm.maxSteps": { fallback: 8, min: 1, max: 1_000 },
  "llm.idleTimeoutMs": { fallback: 60_000, min: 10, max: 3_600_000 },
  "runs.streamFlushMs": { fallback: 40, min: 0, max: 60_000 },
  "runs.toolOutputMaxBytes": { fallback: 16_384, min: 64, max: 67_108_864 },
  "runs.maxActiveRunsPerUser": { fallback: 4, min: 0, max: 1_000_000 },
  "runs.approvalTimeoutMs": { fallback: 300_000, min: 1_000, max: 86_400_000 },
  "runs.leaseMs": { fallback: 10_000, min: 1_000, max: 600_000 },
  "drain.timeoutMs": { fallback: 30_000, min: 0, max: 3_600_000 },
  "drain.spreadMs": { fallback: 1_000, min: 0, max: 60_000 },
  heartbeatSeconds: { fallback: 30, min: 0, max: 3_600 },
  readinessProbeIntervalMs: { fallback: 1_000, min: 50, max: 60_000 },
} as const satisfies Partial<Record<SettingPath, IntegerSetting>>;

/** An integer setting's option path. */
export type IntegerSettingPath = keyof typeof INTEGER_SETTINGS;

/**
 * How a bad setting is reported: {@link ConfigError} naming the variable when the environment
 * gave it, {@link AgentsocketOptionsError} naming the option when the application did.
 */
export interface SettingNaming {
  /** The setting as its source names it (`MAX_FRAME_BYTES` or `limits.maxFrameBytes`). */
  name(path: SettingPath): string;
  /** The error to throw for a bad value of `path`; `message` follows the name. */
  error(path: SettingPath, message: string): Error;
}
