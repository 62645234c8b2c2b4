/**
 * Reads and validates configuration from environment variables (SPEC §1). A bad value throws
 * a {@link ConfigError} whose message is one line naming the variable; `main.ts` prints it and
 * exits without a stack trace.
 *
 * @module
 */
import { type LlmConfig, loadLlmConfig } from "./llm_config.ts";

/** `development` (the default) or `production`. */
export type AppEnv = "development" | "production";

/** How tokens are verified. */
export type JwtKeySource =
  | { readonly kind: "dev_secret" }
  | { readonly kind: "secret"; readonly secret: string }
  | { readonly kind: "jwks"; readonly url: string }
  | { readonly kind: "public_key"; readonly key: string };

/** Guards that tests may switch off to prove the race tests can fail (never in production). */
export const UNSAFE_GUARD_NAMES = [
  "wait_for_open",
  "queue_before_ready",
  "hold_events_until_ready",
  "subscribe_before_catch_up",
  "dedupe_by_seq",
] as const;

/** A guard named in {@link UNSAFE_GUARD_NAMES}. */
export type UnsafeGuardName = typeof UNSAFE_GUARD_NAMES[number];

/** The validated configuration. */
export interface Config {
  readonly port: number;
  readonly host: string;
  readonly appEnv: AppEnv;
  readonly instanceId: string;
  readonly logLevel: "debug" | "info" | "warn" | "error" | "silent";
  readonly jwt: {
    readonly key: JwtKeySource;
    readonly issuer?: string;
    readonly audience?: string;
    readonly clockToleranceSeconds: number;
  };
  readonly databaseUrl?: string;
  readonly redisUrl?: string;
  readonly redisKeyPrefix: string;
  /** Allowed `Origin` values; `undefined` means the environment's default (see README). */
  readonly allowedOrigins?: readonly string[];
  readonly limits: {
    readonly handshakeTimeoutMs: number;
    readonly maxFrameBytes: number;
    readonly maxPreReadyFrames: number;
    readonly maxConnectionsPerUser: number;
    /** Connections one process holds; undefined: the open-files limit less a margin. */
    readonly maxConnections?: number;
    readonly slowConsumerBytes: number;
    readonly slowConsumerTimeoutMs: number;
    readonly rateLimitPerSecond: number;
    readonly rateLimitBurst: number;
  };
  readonly chatIdTtlSeconds: number;
  readonly retention: { readonly count: number; readonly seconds: number };
  readonly agent: { readonly stepDelayMs: number; readonly thinkingSteps: number };
  /** `AGENT`, the model agent's `LLM_*` settings and the run limits (see llm_config.ts). */
  readonly llm: LlmConfig;
  readonly runLeaseMs: number;
  readonly drain: { readonly timeoutMs: number; readonly spreadMs: number };
  readonly heartbeatSeconds: number;
  readonly readinessProbeIntervalMs: number;
  /** Test-only knobs; all zero/empty unless set, and refused in production. */
  readonly testing: {
    readonly verifyDelayMs: number;
    readonly subscribeDelayMs: number;
    readonly catchUpDelayMs: number;
    readonly guardsOff: readonly UnsafeGuardName[];
  };
}

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

/** Reads one variable; `undefined` when unset or empty. */
export type EnvReader = (name: string) => string | undefined;

/**
 * Builds the configuration from environment variables.
 *
 * @param env Reads a variable (defaults to `Deno.env.get`).
 * @returns The validated configuration.
 * @throws {ConfigError} naming the first variable with a bad value.
 */
export function loadConfig(env: EnvReader = (name) => Deno.env.get(name)): Config {
  const read = (name: string) => {
    const value = env(name)?.trim();
    return value === "" ? undefined : value;
  };
  const int = (name: string, fallback: number, min: number, max: number) => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(name, `must be an integer from ${min} to ${max}, received "${raw}"`);
    }
    return value;
  };

  const appEnvRaw = read("APP_ENV") ?? "development";
  if (appEnvRaw !== "development" && appEnvRaw !== "production") {
    throw new ConfigError(
      "APP_ENV",
      `must be "development" or "production", received "${appEnvRaw}"`,
    );
  }
  const appEnv: AppEnv = appEnvRaw;
  const production = appEnv === "production";

  const port = int("PORT", 8000, 0, 65535);
  const host = read("HOST") ?? "0.0.0.0";

  const logLevel = read("LOG_LEVEL") ?? "info";
  if (!["debug", "info", "warn", "error", "silent"].includes(logLevel)) {
    throw new ConfigError(
      "LOG_LEVEL",
      `must be one of debug, info, warn, error, silent, received "${logLevel}"`,
    );
  }

  const key = jwtKeySource(read, production);
  const issuer = read("JWT_ISSUER");
  const audience = read("JWT_AUDIENCE");

  const databaseUrl = read("DATABASE_URL");
  if (databaseUrl !== undefined) {
    checkUrl("DATABASE_URL", databaseUrl, ["postgres:", "postgresql:"]);
  }
  const redisUrl = read("REDIS_URL");
  if (redisUrl !== undefined) checkUrl("REDIS_URL", redisUrl, ["redis:", "rediss:"]);
  if (production && (databaseUrl === undefined) !== (redisUrl === undefined)) {
    const missing = databaseUrl === undefined ? "DATABASE_URL" : "REDIS_URL";
    throw new ConfigError(
      missing,
      "must be set in production when the other of DATABASE_URL and REDIS_URL is set",
    );
  }
  const redisKeyPrefix = read("REDIS_KEY_PREFIX") ?? "agentsocket";
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(redisKeyPrefix)) {
    throw new ConfigError(
      "REDIS_KEY_PREFIX",
      `must be 1 to 64 characters of letters, digits, ":", "_", "." or "-", received "${redisKeyPrefix}"`,
    );
  }

  const allowedOrigins = originList(read("ALLOWED_ORIGINS"));

  const testing = {
    verifyDelayMs: int("TEST_DELAY_VERIFY_MS", 0, 0, 60_000),
    subscribeDelayMs: int("TEST_DELAY_SUBSCRIBE_MS", 0, 0, 60_000),
    catchUpDelayMs: int("TEST_DELAY_CATCH_UP_MS", 0, 0, 60_000),
    guardsOff: guardList(read("TEST_UNSAFE_GUARDS_OFF")),
  };
  if (production) {
    for (
      const [name, on] of [
        ["TEST_DELAY_VERIFY_MS", testing.verifyDelayMs > 0],
        ["TEST_DELAY_SUBSCRIBE_MS", testing.subscribeDelayMs > 0],
        ["TEST_DELAY_CATCH_UP_MS", testing.catchUpDelayMs > 0],
        ["TEST_UNSAFE_GUARDS_OFF", testing.guardsOff.length > 0],
      ] as const
    ) {
      if (on) throw new ConfigError(name, "is a test-only knob and must not be set in production");
    }
  }

  const retention = {
    count: int("EVENT_RETENTION_COUNT", 10_000, 10, 10_000_000),
    seconds: int("EVENT_RETENTION_SECONDS", 3_600, 10, 31_536_000),
  };
  const llm = loadLlmConfig(read);
  if (llm.toolApprovalTimeoutMs >= retention.seconds * 1000) {
    // An approval must be decided while its request is still in the log (docs/protocol.md#approval).
    throw new ConfigError(
      "TOOL_APPROVAL_TIMEOUT_MS",
      `must be below the event retention age (EVENT_RETENTION_SECONDS=${retention.seconds}, so under ${
        retention.seconds * 1000
      }), received ${llm.toolApprovalTimeoutMs}`,
    );
  }

  return {
    port,
    host,
    appEnv,
    instanceId: read("INSTANCE_ID") ?? crypto.randomUUID(),
    logLevel: logLevel as Config["logLevel"],
    jwt: {
      key,
      issuer,
      audience,
      clockToleranceSeconds: int("JWT_CLOCK_TOLERANCE_SECONDS", 5, 0, 300),
    },
    databaseUrl,
    redisUrl,
    redisKeyPrefix,
    allowedOrigins,
    limits: {
      handshakeTimeoutMs: int("HANDSHAKE_TIMEOUT_MS", 5_000, 100, 120_000),
      maxFrameBytes: int("MAX_FRAME_BYTES", 65_536, 1_024, 16_777_216),
      maxPreReadyFrames: int("MAX_PRE_READY_FRAMES", 64, 1, 10_000),
      maxConnectionsPerUser: int("MAX_CONNECTIONS_PER_USER", 10, 1, 100_000),
      maxConnections: read("MAX_CONNECTIONS") === undefined
        ? undefined
        : int("MAX_CONNECTIONS", 0, 1, 10_000_000),
      slowConsumerBytes: int("SLOW_CONSUMER_BYTES", 1_048_576, 16_384, 1_073_741_824),
      slowConsumerTimeoutMs: int("SLOW_CONSUMER_TIMEOUT_MS", 10_000, 100, 600_000),
      rateLimitPerSecond: int("RATE_LIMIT_PER_SECOND", 50, 1, 1_000_000),
      rateLimitBurst: int("RATE_LIMIT_BURST", 100, 1, 1_000_000),
    },
    chatIdTtlSeconds: int("CHAT_ID_TTL_SECONDS", 86_400, 1, 31_536_000),
    retention,
    agent: {
      stepDelayMs: int("AGENT_STEP_DELAY_MS", 250, 0, 600_000),
      thinkingSteps: int("AGENT_THINKING_STEPS", 1, 1, 1_000_000),
    },
    llm,
    runLeaseMs: int("RUN_LEASE_MS", 10_000, 1_000, 600_000),
    drain: {
      timeoutMs: int("DRAIN_TIMEOUT_MS", 30_000, 0, 3_600_000),
      spreadMs: int("DRAIN_SPREAD_MS", 1_000, 0, 60_000),
    },
    heartbeatSeconds: int("HEARTBEAT_SECONDS", 30, 0, 3_600),
    readinessProbeIntervalMs: int("READINESS_PROBE_INTERVAL_MS", 1_000, 50, 60_000),
    testing,
  };
}

function jwtKeySource(read: (name: string) => string | undefined, production: boolean) {
  const secret = read("JWT_SECRET");
  const jwksUrl = read("JWT_JWKS_URL");
  const publicKey = read("JWT_PUBLIC_KEY");
  const given = [
    ["JWT_SECRET", secret],
    ["JWT_JWKS_URL", jwksUrl],
    ["JWT_PUBLIC_KEY", publicKey],
  ].filter(([, value]) => value !== undefined);
  if (given.length > 1) {
    throw new ConfigError(
      given[1][0]!,
      `cannot be combined with ${
        given[0][0]
      }: set exactly one of JWT_SECRET, JWT_JWKS_URL, JWT_PUBLIC_KEY`,
    );
  }
  if (secret !== undefined) {
    if (new TextEncoder().encode(secret).length < 32) {
      throw new ConfigError("JWT_SECRET", "must be at least 32 bytes long");
    }
    return { kind: "secret", secret } as const;
  }
  if (jwksUrl !== undefined) {
    checkUrl("JWT_JWKS_URL", jwksUrl, ["https:", "http:"]);
    return { kind: "jwks", url: jwksUrl } as const;
  }
  if (publicKey !== undefined) {
    const looksLikeKey = publicKey.includes("-----BEGIN PUBLIC KEY-----") ||
      publicKey.startsWith("{");
    if (!looksLikeKey) {
      throw new ConfigError(
        "JWT_PUBLIC_KEY",
        "must be a PEM public key (-----BEGIN PUBLIC KEY-----) or a JWK in JSON",
      );
    }
    return { kind: "public_key", key: publicKey.replaceAll("\\n", "\n") } as const;
  }
  if (production) {
    throw new ConfigError(
      "JWT_SECRET",
      "(or JWT_JWKS_URL or JWT_PUBLIC_KEY) must be set when APP_ENV is production",
    );
  }
  return { kind: "dev_secret" } as const;
}

function checkUrl(name: string, value: string, protocols: readonly string[]): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, "must be a valid URL");
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(
      name,
      `must use ${protocols.map((p) => `${p}//`).join(" or ")}, received "${url.protocol}//"`,
    );
  }
}

function originList(raw: string | undefined): readonly string[] | undefined {
  if (raw === undefined) return undefined;
  const origins = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  for (const origin of origins) {
    if (origin === "*") continue;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new ConfigError("ALLOWED_ORIGINS", `has an entry that is not an origin: "${origin}"`);
    }
    if (url.origin !== origin.replace(/\/$/, "")) {
      throw new ConfigError(
        "ALLOWED_ORIGINS",
        `entries must be bare origins like https://app.example.com, received "${origin}"`,
      );
    }
  }
  return origins.map((o) => o.replace(/\/$/, ""));
}

function guardList(raw: string | undefined): UnsafeGuardName[] {
  if (raw === undefined) return [];
  const names = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  for (const name of names) {
    if (!(UNSAFE_GUARD_NAMES as readonly string[]).includes(name)) {
      throw new ConfigError(
        "TEST_UNSAFE_GUARDS_OFF",
        `has an unknown guard "${name}" (known: ${UNSAFE_GUARD_NAMES.join(", ")})`,
      );
    }
  }
  return names as UnsafeGuardName[];
}
