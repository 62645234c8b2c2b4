/**
 * agentsocket, embedded: a WebSocket backend for real-time AI chat that a Deno or hono
 * application mounts with its own agent, tools and hooks. {@link createAgentsocket} builds the
 * same server as `deno task start` from explicit options; {@link fromEnv} reads the settings
 * from the environment when the application wants that (nothing else reads it).
 *
 * @example A Deno.serve app with its own agent
 * ```ts ignore
 * import { createAgentsocket } from "@agentsocket/server";
 * import type { Agent } from "@agentsocket/server";
 *
 * const agent: Agent = {
 *   async *run({ text }) {
 *     yield { kind: "text", text: `You said: ${text}` };
 *   },
 * };
 * const socket = await createAgentsocket({ agent, jwt: { secret: mySecret } });
 * await socket.start();
 * const server = Deno.serve({ port: 8000 }, socket.fetch);
 * Deno.addSignalListener("SIGTERM", async () => {
 *   await socket.drain();
 *   await server.shutdown();
 *   await socket.close();
 * });
 * ```
 *
 * @module
 */
export { createAgentsocket } from "./src/server/create_agentsocket.ts";
export type { Agentsocket } from "./src/server/create_agentsocket.ts";
export type { AgentsocketOptions } from "./src/server/agentsocket_options.ts";
export { StartupError } from "./src/server/startup_error.ts";
export { AgentsocketOptionsError, ConfigError, fromEnv } from "./src/config/mod.ts";
export type {
  AgentsocketSettings,
  AppEnv,
  FromEnvOptions,
  JwtSettings,
  LimitSettings,
  LlmAgentSettings,
  RunSettings,
} from "./src/config/mod.ts";
export type {
  Agent,
  AgentRequest,
  AgentStep,
  ToolCallResult,
  ToolHandle,
  ToolSpec,
  Turn,
} from "./src/agent/mod.ts";
export type { AnyTool, JsonSchema, Tool, ToolContext } from "./src/tools/mod.ts";
export type {
  BeforeRunDecision,
  BeforeRunHook,
  BeforeRunRequest,
  RunChoice,
  RunRefusal,
  UsageHook,
  UsageReport,
} from "./src/runs/mod.ts";
export type { LogFields, Logger, LogLevel } from "./src/_util/log.ts";
export type { ServeInfo } from "./src/http/mod.ts";
export type { Json, RunStatus, Usage } from "./src/protocol/mod.ts";
