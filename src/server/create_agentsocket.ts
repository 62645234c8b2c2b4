/**
 * The embedding factory: builds the same server as `deno task start` from explicit options and
 * returns what `Deno.serve` needs (`fetch`) plus `start`, `drain` and `close`. `main.ts` builds
 * through {@link openAgentsocket} too, from the environment's configuration.
 *
 * @module
 */
import type { ServerConfig } from "../config/mod.ts";
import { OPTION_NAMING } from "../config/mod.ts";
import type { ServeInfo } from "../http/mod.ts";
import { resolveOptions } from "./agentsocket_options.ts";
import type { AgentsocketOptions } from "./agentsocket_options.ts";
import { buildServer } from "./build_server.ts";
import type { AgentsocketServer, BuildOptions } from "./build_server.ts";

/** A built agentsocket instance, not yet listening anywhere. */
export interface Agentsocket {
  /**
   * Answers one HTTP request: give it to `Deno.serve`, or call it from your router for every
   * path under {@link Agentsocket.basePath} (the WebSocket upgrade included). `info` carries the
   * client's address, which `POST /auth/dev-token` checks (loopback only).
   */
  fetch(request: Request, info?: ServeInfo): Response | Promise<Response>;
  /**
   * Starts the background work (readiness probes, run leases, the orphan reaper) and resolves
   * after the first probe. Call it before serving: until then the readiness check answers 503
   * and upgrades close 1013.
   *
   * @throws {StartupError} when the instance cannot go on (a schema migration failed).
   */
  start(): Promise<void>;
  /**
   * Drains, as on SIGTERM: readiness turns 503, new chats are refused `draining`, runs in
   * flight get up to `drain.timeoutMs` to finish (then end `agent_failed` `shutdown`), and
   * every socket is closed 1012 so its client resumes elsewhere. Resolves when all of that is
   * done.
   */
  drain(): Promise<void>;
  /** Stops every timer and closes the store and engine connections (after `drain()`). */
  close(): Promise<void>;
  /** Where the routes are mounted (`""` or e.g. `/chat`). */
  readonly basePath: string;
  /** This instance's id (the owner recorded on its runs). */
  readonly instanceId: string;
  /**
   * Rejects with a `StartupError` if the instance cannot go on at all (a schema migration
   * failed once PostgreSQL answered); never resolves. Exit, or close the instance, then.
   */
  readonly fatal: Promise<never>;
}

/**
 * Builds an agentsocket instance from explicit options; nothing is read from the environment
 * (use `fromEnv()` for that).
 *
 * @example A Deno.serve app with its own agent
 * ```ts ignore
 * const socket = await createAgentsocket({ agent: myAgent, tools: [myTool] });
 * await socket.start();
 * Deno.serve({ port: 8000 }, socket.fetch);
 * ```
 *
 * @param options The settings, the agent, tools and hooks.
 * @returns The instance; call `start()` before serving it.
 * @throws {AgentsocketOptionsError} naming the first unknown, bad or contradictory option.
 */
export async function createAgentsocket(options: AgentsocketOptions = {}): Promise<Agentsocket> {
  const resolved = resolveOptions(options);
  return await openAgentsocket(resolved.config, {
    agent: resolved.agent,
    tools: resolved.tools,
    hooks: resolved.hooks,
    hookTimeoutMs: resolved.hookTimeoutMs,
    basePath: resolved.basePath,
    page: resolved.page,
    devTokens: resolved.devTokens,
    log: resolved.logger,
    naming: OPTION_NAMING,
  });
}

/**
 * Builds an instance from a checked configuration: the one path `createAgentsocket()` and
 * `main.ts` share.
 *
 * @param config The configuration (from options, or from the environment with its test knobs).
 * @param options What code gives the instance.
 */
export async function openAgentsocket(
  config: ServerConfig,
  options: BuildOptions = {},
): Promise<Agentsocket & Pick<AgentsocketServer, "log">> {
  const server = await buildServer(config, options);
  return {
    log: server.log,
    basePath: options.basePath ?? "",
    instanceId: config.instanceId,
    fatal: server.fatal,
    fetch: (request, info) => server.fetch(request, info ?? NO_ADDRESS),
    async start() {
      await Promise.race([server.start(), server.fatal]);
    },
    drain: () => server.drain(),
    close: () => server.close(),
  };
}

/** A request without the client's address: never loopback, so no dev token. */
const NO_ADDRESS: ServeInfo = { remoteAddr: { hostname: "" } };
