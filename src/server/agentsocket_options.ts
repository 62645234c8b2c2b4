/**
 * What an embedding application passes to `createAgentsocket()`: the settings (plain data,
 * the same ones `fromEnv()` reads), and what only code can give: the agent, the tools, the
 * hooks, a logger, and where the routes go. {@link resolveOptions} checks all of it up front
 * and throws an {@link AgentsocketOptionsError} naming the first bad option; it never reads the
 * environment and never exits the process.
 *
 * @module
 */
import type { Logger } from "../_util/log.ts";
import type { Agent } from "../agent/mod.ts";
import {
  AgentsocketOptionsError,
  OPTION_NAMING,
  resolveSettings,
  SETTING_VARIABLES,
} from "../config/mod.ts";
import type { AgentsocketSettings, ServerConfig } from "../config/mod.ts";
import { checkBasePath } from "../http/mod.ts";
import type { BeforeRunHook, UsageHook } from "../runs/mod.ts";
import type { AnyTool } from "../tools/mod.ts";

/** Options of `createAgentsocket()`: the settings, plus what only code can give. */
export interface AgentsocketOptions extends AgentsocketSettings {
  /**
   * The agent behind every chat (agent port v2). It wins over `llm` (and so over `AGENT`).
   * @default the model agent when `llm` is set, else the demo agent
   */
  readonly agent?: Agent;
  /**
   * The tools the agent may call; the orchestrator validates, asks approval and runs them.
   * @default the demo agent's `calculator` and `echo` with the built-in agents; none with
   *   `agent`
   */
  readonly tools?: readonly AnyTool[];
  /**
   * Called for each new chat once its checks passed, before its run starts: may refuse it
   * (error `refused`, nothing stored) or choose the model and system prompt of the run. A hook
   * that throws, or takes longer than `hookTimeoutMs`, refuses the chat `unavailable`.
   */
  readonly beforeRun?: BeforeRunHook;
  /** Told each run's usage when it ended (runs whose agent reported usage); never awaited. */
  readonly onUsage?: UsageHook;
  /**
   * How long `beforeRun` may take. The connection's next frames wait for it, so keep it short
   * (at most 10000: a client's ping waits behind it). @default 3000
   */
  readonly hookTimeoutMs?: number;
  /** Mount every route under this path (`/chat` → `/chat/ws`, `/chat/api/threads`). @default "" */
  readonly basePath?: string;
  /** Serve the chat page (and its scripts) at the base path. @default true */
  readonly page?: boolean;
  /** Serve `POST /auth/dev-token` to loopback clients (never in production). @default true */
  readonly devTokens?: boolean;
  /** Where log lines go. @default JSON lines on stderr at `logLevel` */
  readonly logger?: Logger;
}

/** The options, checked, in the form the server is built from. */
export interface ResolvedOptions {
  readonly config: ServerConfig;
  readonly agent?: Agent;
  readonly tools?: readonly AnyTool[];
  readonly hooks: { readonly beforeRun?: BeforeRunHook; readonly onUsage?: UsageHook };
  readonly hookTimeoutMs: number;
  readonly basePath: string;
  readonly page: boolean;
  readonly devTokens: boolean;
  readonly logger?: Logger;
}

/** The options that are not settings, each with a check of its value. */
const CODE_OPTIONS: Readonly<Record<string, (value: unknown) => string | undefined>> = {
  agent: (v) =>
    typeof (v as Agent | null)?.run === "function" ? undefined : "must have a run() method",
  tools: (v) => Array.isArray(v) ? undefined : "must be a list of tools",
  beforeRun: (v) => typeof v === "function" ? undefined : "must be a function",
  onUsage: (v) => typeof v === "function" ? undefined : "must be a function",
  hookTimeoutMs: (v) =>
    Number.isSafeInteger(v) && (v as number) >= 10 && (v as number) <= 10_000
      ? undefined
      : "must be an integer from 10 to 10000",
  basePath: (v) => {
    if (typeof v !== "string") return "must be a string";
    try {
      checkBasePath(v);
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  },
  page: (v) => typeof v === "boolean" ? undefined : "must be true or false",
  devTokens: (v) => typeof v === "boolean" ? undefined : "must be true or false",
  logger: (v) =>
    ["debug", "info", "warn", "error"].every((level) =>
        typeof (v as Record<string, unknown> | null)?.[level] === "function"
      )
      ? undefined
      : "must have debug(), info(), warn() and error() methods",
};

/** The groups of settings, each with its known keys. */
const SETTING_GROUPS = groupsOf(Object.keys(SETTING_VARIABLES));

/**
 * Checks the options and fills in every default.
 *
 * @param options What the application passed (may be untyped JS).
 * @returns The configuration and the code-given parts.
 * @throws {AgentsocketOptionsError} naming the first unknown or bad option.
 */
export function resolveOptions(options: AgentsocketOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new AgentsocketOptionsError("options", "must be an object");
  }
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    const check = CODE_OPTIONS[key];
    if (check) {
      const problem = check(value);
      if (problem !== undefined) throw new AgentsocketOptionsError(key, problem);
      continue;
    }
    if (!SETTING_GROUPS.has(key)) {
      throw unknownOption(key, [...SETTING_GROUPS.keys(), ...Object.keys(CODE_OPTIONS)]);
    }
    const known = SETTING_GROUPS.get(key)!;
    if (known.size === 0 || typeof value !== "object" || value === null) continue;
    for (const inner of Object.keys(value)) {
      if (!known.has(inner)) throw unknownOption(`${key}.${inner}`, [...known]);
    }
  }
  const config: ServerConfig = {
    ...resolveSettings(options, OPTION_NAMING),
    testing: { verifyDelayMs: 0, subscribeDelayMs: 0, catchUpDelayMs: 0, guardsOff: [] },
  };
  return {
    config,
    agent: options.agent,
    tools: options.tools,
    hooks: { beforeRun: options.beforeRun, onUsage: options.onUsage },
    hookTimeoutMs: options.hookTimeoutMs ?? 3_000,
    basePath: checkBasePath(options.basePath ?? ""),
    page: options.page ?? true,
    devTokens: options.devTokens ?? true,
    logger: options.logger,
  };
}

function unknownOption(option: string, known: readonly string[]): AgentsocketOptionsError {
  const near = known.find((name) => name.toLowerCase() === option.split(".").at(-1)!.toLowerCase());
  return new AgentsocketOptionsError(
    option,
    `is not an option${near === undefined ? "" : ` (did you mean "${near}"?)`}`,
  );
}

/** Top-level setting keys, each with the keys of its group (empty for a plain setting). */
function groupsOf(paths: readonly string[]): Map<string, Set<string>> {
  const groups = new Map<string, Set<string>>();
  for (const path of paths) {
    const [top, inner] = path.split(".");
    const keys = groups.get(top) ?? new Set<string>();
    if (inner !== undefined) keys.add(inner);
    groups.set(top, keys);
  }
  return groups;
}
