/**
 * Validates {@link AgentsocketSettings} and fills in the defaults: the one validator behind
 * both `loadConfig()` (the environment) and the embedding factory (options), so a bound, a
 * default or a rule between two settings is written once. A bad value is the error the
 * {@link SettingNaming} makes: one line naming the variable or the option.
 *
 * @module
 */
import { LLM_PROVIDERS } from "../agent/llm/mod.ts";
import type { LlmProvider, LlmSettings } from "../agent/llm/mod.ts";
import type { LogLevel } from "../_util/log.ts";
import { INTEGER_SETTINGS } from "./agentsocket_settings.ts";
import type {
  AgentsocketSettings,
  AppEnv,
  IntegerSettingPath,
  SettingNaming,
  SettingPath,
} from "./agentsocket_settings.ts";

/** How tokens are verified. */
export type JwtKeySource =
  | { readonly kind: "dev_secret" }
  | { readonly kind: "secret"; readonly secret: string }
  | { readonly kind: "jwks"; readonly url: string }
  | { readonly kind: "public_key"; readonly key: string };

/** The agents the settings can choose. */
export const AGENT_KINDS = ["demo", "llm"] as const;

/** One of {@link AGENT_KINDS}. */
export type AgentKind = typeof AGENT_KINDS[number];

/** The agent and the run limits, validated. */
export interface LlmConfig {
  /** `demo`, or `llm` when model settings are given. @default "demo" */
  readonly agent: AgentKind;
  /** The model agent's settings; set exactly when `agent` is `llm`. */
  readonly settings?: LlmSettings;
  /** Pieces within this window after the first are one event. @default 40 */
  readonly streamFlushMs: number;
  /** A tool output is cut to this, for the model and the event. @default 16384 */
  readonly toolOutputMaxBytes: number;
  /** Runs in flight per user; 0 = no limit. @default 4 */
  readonly maxActiveRunsPerUser: number;
  /** How long a tool call waits for a person (below the event retention age). @default 300000 */
  readonly toolApprovalTimeoutMs: number;
  /** Names of tools that need approval on top of those marked in code. @default [] */
  readonly toolsRequireApproval: readonly string[];
}

/** Validated settings with every default filled in. */
export interface ResolvedSettings {
  readonly appEnv: AppEnv;
  readonly instanceId: string;
  readonly logLevel: LogLevel;
  readonly jwt: {
    readonly key: JwtKeySource;
    readonly issuer?: string;
    readonly audience?: string;
    readonly clockToleranceSeconds: number;
  };
  readonly databaseUrl?: string;
  readonly redisUrl?: string;
  readonly redisKeyPrefix: string;
  /** Allowed `Origin` values; `undefined` means the environment's default. */
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
    /**
     * A close decided while the client is still sending waits until it has sent nothing for
     * this long (250 ms by default, at most a second), so that the close code reaches it; 0
     * closes at once.
     */
    readonly closeLingerMs: number;
  };
  readonly chatIdTtlSeconds: number;
  readonly retention: { readonly count: number; readonly seconds: number };
  readonly agent: { readonly stepDelayMs: number; readonly thinkingSteps: number };
  /** The agent, the model agent's settings and the run limits. */
  readonly llm: LlmConfig;
  readonly runLeaseMs: number;
  readonly drain: { readonly timeoutMs: number; readonly spreadMs: number };
  readonly heartbeatSeconds: number;
  readonly readinessProbeIntervalMs: number;
}

const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/** The official API roots, sent explicitly so the SDK never falls back to its own variables. */
const OFFICIAL_BASE_URLS: Readonly<Record<Exclude<LlmProvider, "openai-compatible">, string>> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com/v1",
};

/**
 * Validates settings and fills in every default.
 *
 * @param settings The settings, from the environment or the application (may be untyped JS).
 * @param naming Makes the error for a bad setting.
 * @returns The resolved settings.
 * @throws The naming's error for the first bad setting.
 */
export function resolveSettings(
  settings: AgentsocketSettings,
  naming: SettingNaming,
): ResolvedSettings {
  const v = new SettingValues(settings, naming);
  const appEnv = v.oneOf("appEnv", ["development", "production"] as const) ?? "development";
  const production = appEnv === "production";
  const logLevel = v.oneOf("logLevel", LOG_LEVELS) ?? "info";
  const key = jwtKeySource(v, production);

  const databaseUrl = v.url("databaseUrl", ["postgres:", "postgresql:"]);
  const redisUrl = v.url("redisUrl", ["redis:", "rediss:"]);
  if (production && (databaseUrl === undefined) !== (redisUrl === undefined)) {
    const missing = databaseUrl === undefined ? "databaseUrl" : "redisUrl";
    throw naming.error(
      missing,
      `must be set in production when the other of ${naming.name("databaseUrl")} and ${
        naming.name("redisUrl")
      } is set`,
    );
  }
  const redisKeyPrefix = v.string("redisKeyPrefix") ?? "agentsocket";
  if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(redisKeyPrefix)) {
    throw naming.error(
      "redisKeyPrefix",
      `must be 1 to 64 characters of letters, digits, ":", "_", "." or "-", received "${redisKeyPrefix}"`,
    );
  }

  const retention = { count: v.int("retention.count"), seconds: v.int("retention.seconds") };
  const llm = resolveLlm(v);
  if (llm.toolApprovalTimeoutMs >= retention.seconds * 1000) {
    // An approval must be decided while its request is still in the log (docs/protocol.md#approval).
    throw naming.error(
      "runs.approvalTimeoutMs",
      `must be below the event retention age (${
        naming.name("retention.seconds")
      }=${retention.seconds}, so under ${
        retention.seconds * 1000
      }), received ${llm.toolApprovalTimeoutMs}`,
    );
  }

  return {
    appEnv,
    instanceId: v.string("instanceId") ?? crypto.randomUUID(),
    logLevel,
    jwt: {
      key,
      issuer: v.string("jwt.issuer"),
      audience: v.string("jwt.audience"),
      clockToleranceSeconds: v.int("jwt.clockToleranceSeconds"),
    },
    databaseUrl,
    redisUrl,
    redisKeyPrefix,
    allowedOrigins: originList(v),
    limits: {
      handshakeTimeoutMs: v.int("limits.handshakeTimeoutMs"),
      maxFrameBytes: v.int("limits.maxFrameBytes"),
      maxPreReadyFrames: v.int("limits.maxPreReadyFrames"),
      maxConnectionsPerUser: v.int("limits.maxConnectionsPerUser"),
      maxConnections: v.optionalInt("limits.maxConnections"),
      slowConsumerBytes: v.int("limits.slowConsumerBytes"),
      slowConsumerTimeoutMs: v.int("limits.slowConsumerTimeoutMs"),
      rateLimitPerSecond: v.int("limits.rateLimitPerSecond"),
      rateLimitBurst: v.int("limits.rateLimitBurst"),
      closeLingerMs: v.int("limits.closeLingerMs"),
    },
    chatIdTtlSeconds: v.int("chatIdTtlSeconds"),
    retention,
    agent: {
      stepDelayMs: v.int("demo.stepDelayMs"),
      thinkingSteps: v.int("demo.thinkingSteps"),
    },
    llm,
    runLeaseMs: v.int("runs.leaseMs"),
    drain: { timeoutMs: v.int("drain.timeoutMs"), spreadMs: v.int("drain.spreadMs") },
    heartbeatSeconds: v.int("heartbeatSeconds"),
    readinessProbeIntervalMs: v.int("readinessProbeIntervalMs"),
  };
}

/**
 * Validates the agent part alone: the model agent's settings, when given, and the run limits.
 *
 * @throws The naming's error for the first bad setting.
 */
export function resolveLlmSettings(
  settings: Pick<AgentsocketSettings, "llm" | "runs" | "toolsRequireApproval">,
  naming: SettingNaming,
): LlmConfig {
  return resolveLlm(new SettingValues(settings, naming));
}

function resolveLlm(v: SettingValues): LlmConfig {
  const shared = {
    streamFlushMs: v.int("runs.streamFlushMs"),
    toolOutputMaxBytes: v.int("runs.toolOutputMaxBytes"),
    maxActiveRunsPerUser: v.int("runs.maxActiveRunsPerUser"),
    toolApprovalTimeoutMs: v.int("runs.approvalTimeoutMs"),
    toolsRequireApproval: toolNames(v),
  };
  if (v.group("llm") === undefined) return { agent: "demo", ...shared };
  return { agent: "llm", settings: llmAgentSettings(v), ...shared };
}

function llmAgentSettings(v: SettingValues): LlmSettings {
  const { naming } = v;
  const provider = v.oneOf("llm.provider", LLM_PROVIDERS) ?? "openai-compatible";
  const model = v.string("llm.model");
  if (model === undefined) {
    throw naming.error(
      "llm.model",
      `must be set when ${naming.name("llm")} is llm (e.g. llama3.2)`,
    );
  }
  const baseUrlRaw = v.string("llm.baseUrl");
  if (baseUrlRaw === undefined && provider === "openai-compatible") {
    throw naming.error(
      "llm.baseUrl",
      `must be set when ${
        naming.name("llm.provider")
      } is openai-compatible (the API root with /v1, e.g. http://127.0.0.1:11434/v1)`,
    );
  }
  const baseUrl = baseUrlRaw === undefined
    ? OFFICIAL_BASE_URLS[provider as Exclude<LlmProvider, "openai-compatible">]
    : apiRoot(v, baseUrlRaw);
  // The value is never echoed: a message names the setting only.
  const apiKey = v.string("llm.apiKey", { secret: true });
  if (apiKey === undefined && provider !== "openai-compatible") {
    throw naming.error(
      "llm.apiKey",
      `must be set when ${naming.name("llm.provider")} is ${provider}`,
    );
  }
  if (apiKey !== undefined && !/^[\x21-\x7e]+$/.test(apiKey)) {
    throw naming.error("llm.apiKey", "must be printable ASCII without spaces");
  }
  return {
    provider,
    baseUrl,
    apiKey,
    model,
    systemPrompt: v.string("llm.systemPrompt"),
    historyMessages: v.int("llm.historyMessages"),
    contextTokens: v.int("llm.contextTokens"),
    maxSteps: v.int("llm.maxSteps"),
    idleTimeoutMs: v.int("llm.idleTimeoutMs"),
  };
}

function apiRoot(v: SettingValues, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw v.naming.error("llm.baseUrl", "must be a valid http:// or https:// URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw v.naming.error(
      "llm.baseUrl",
      `must use http:// or https://, received "${url.protocol}//"`,
    );
  }
  if (url.search !== "" || url.hash !== "") {
    throw v.naming.error("llm.baseUrl", "must be an API root without a query or a fragment");
  }
  return raw.replace(/\/+$/, "");
}

function jwtKeySource(v: SettingValues, production: boolean): JwtKeySource {
  const { naming } = v;
  const secret = v.string("jwt.secret", { secret: true });
  const jwksUrl = v.url("jwt.jwksUrl", ["https:", "http:"]);
  const publicKey = v.string("jwt.publicKey");
  const given = ([
    ["jwt.secret", secret],
    ["jwt.jwksUrl", jwksUrl],
    ["jwt.publicKey", publicKey],
  ] as const).filter(([, value]) => value !== undefined);
  if (given.length > 1) {
    throw naming.error(
      given[1][0],
      `cannot be combined with ${naming.name(given[0][0])}: set exactly one of ${
        naming.name("jwt.secret")
      }, ${naming.name("jwt.jwksUrl")}, ${naming.name("jwt.publicKey")}`,
    );
  }
  if (secret !== undefined) {
    if (new TextEncoder().encode(secret).length < 32) {
      throw naming.error("jwt.secret", "must be at least 32 bytes long");
    }
    return { kind: "secret", secret };
  }
  if (jwksUrl !== undefined) return { kind: "jwks", url: jwksUrl };
  if (publicKey !== undefined) {
    const looksLikeKey = publicKey.includes("-----BEGIN PUBLIC KEY-----") ||
      publicKey.startsWith("{");
    if (!looksLikeKey) {
      throw naming.error(
        "jwt.publicKey",
        "must be a PEM public key (-----BEGIN PUBLIC KEY-----) or a JWK in JSON",
      );
    }
    return { kind: "public_key", key: publicKey };
  }
  if (production) {
    throw naming.error(
      "jwt.secret",
      `(or ${naming.name("jwt.jwksUrl")} or ${naming.name("jwt.publicKey")}) must be set when ${
        naming.name("appEnv")
      } is production`,
    );
  }
  return { kind: "dev_secret" };
}

function originList(v: SettingValues): readonly string[] | undefined {
  const origins = v.stringList("allowedOrigins");
  if (origins === undefined) return undefined;
  for (const origin of origins) {
    if (origin === "*") continue;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw v.naming.error(
        "allowedOrigins",
        `has an entry that is not an origin: "${origin}"`,
      );
    }
    if (url.origin !== origin.replace(/\/$/, "")) {
      throw v.naming.error(
        "allowedOrigins",
        `entries must be bare origins like https://app.example.com, received "${origin}"`,
      );
    }
  }
  return origins.map((o) => o.replace(/\/$/, ""));
}

/** A list of tool names; each must look like a tool name. */
function toolNames(v: SettingValues): string[] {
  const names = v.stringList("toolsRequireApproval") ?? [];
  for (const name of names) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
      throw v.naming.error(
        "toolsRequireApproval",
        `must list tool names (letters, digits, "_", "-"), received "${name}"`,
      );
    }
  }
  return [...new Set(names)];
}

/** Reads typed values out of untrusted settings, by path; a bad one is the naming's error. */
class SettingValues {
  readonly naming: SettingNaming;
  #settings: unknown;

  constructor(settings: unknown, naming: SettingNaming) {
    this.naming = naming;
    this.#settings = settings;
  }

  /** A group (`llm`, `limits`): undefined, or a plain object. */
  group(path: SettingPath): Record<string, unknown> | undefined {
    const value = this.#raw(path);
    if (value === undefined) return undefined;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw this.naming.error(path, `must be an object, received ${describe(value)}`);
    }
    return value as Record<string, unknown>;
  }

  /** A string; an empty or blank one counts as unset, as an empty variable does. */
  string(path: SettingPath, options: { secret?: boolean } = {}): string | undefined {
    const value = this.#raw(path);
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      throw this.naming.error(
        path,
        `must be a string, received ${options.secret ? typeof value : describe(value)}`,
      );
    }
    const trimmed = value.trim();
    return trimmed === "" ? undefined : trimmed;
  }

  oneOf<T extends string>(path: SettingPath, values: readonly T[]): T | undefined {
    const value = this.string(path);
    if (value === undefined) return undefined;
    if (!(values as readonly string[]).includes(value)) {
      throw this.naming.error(
        path,
        `must be one of ${values.join(", ")}, received "${value}"`,
      );
    }
    return value as T;
  }

  url(path: SettingPath, protocols: readonly string[]): string | undefined {
    const value = this.string(path);
    if (value === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw this.naming.error(path, "must be a valid URL");
    }
    if (!protocols.includes(url.protocol)) {
      throw this.naming.error(
        path,
        `must use ${protocols.map((p) => `${p}//`).join(" or ")}, received "${url.protocol}//"`,
      );
    }
    return value;
  }

  /** A list of strings, trimmed, blanks dropped. */
  stringList(path: SettingPath): string[] | undefined {
    const value = this.#raw(path);
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.some((item) => typeof item !== "string")) {
      throw this.naming.error(path, `must be a list of strings, received ${describe(value)}`);
    }
    return value.map((item: string) => item.trim()).filter((item) => item !== "");
  }

  /** An integer setting, or its default. */
  int(path: Exclude<IntegerSettingPath, "limits.maxConnections">): number {
    return this.optionalInt(path) ?? INTEGER_SETTINGS[path].fallback;
  }

  optionalInt(path: IntegerSettingPath): number | undefined {
    const { fallback, min, max } = INTEGER_SETTINGS[path];
    const value = this.#raw(path);
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
      throw this.naming.error(
        path,
        `must be an integer from ${min} to ${max}, received ${describe(value)}`,
      );
    }
    return value;
  }

  #raw(path: SettingPath): unknown {
    let value: unknown = this.#settings;
    for (const key of path.split(".")) {
      if (value === undefined || value === null) return undefined;
      if (typeof value !== "object") {
        throw this.naming.error(path, `must be inside an object, received ${describe(value)}`);
      }
      value = (value as Record<string, unknown>)[key];
    }
    return value === null ? undefined : value;
  }
}

/** A value as an error message shows it. */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}
