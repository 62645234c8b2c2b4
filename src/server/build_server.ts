/**
 * Builds one agentsocket instance from its configuration: the store and the event engine
 * (memory, or PostgreSQL and Redis), token verification, the run orchestrator, the readiness
 * checker, the connection core and the HTTP app, and the drain.
 *
 * @module
 */
import { systemClock } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import { createLogger } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { createAgent, createDemoTools } from "../agent/mod.ts";
import type { Agent } from "../agent/mod.ts";
import { createVerifier } from "../auth/mod.ts";
import { createEngine } from "../bus/mod.ts";
import { RunOrchestrator } from "../runs/mod.ts";
import type { RunHooks } from "../runs/mod.ts";
import { ToolRegistry, ToolRegistryError } from "../tools/mod.ts";
import type { AnyTool } from "../tools/mod.ts";
import type { EventEngine } from "../bus/mod.ts";
import { AgentsocketOptionsError, ENV_NAMING } from "../config/mod.ts";
import type { ServerConfig, SettingNaming } from "../config/mod.ts";
import {
  ConnectionReadinessChecker,
  HandshakeCoordinator,
  RaceConditionDetector,
} from "../connection/mod.ts";
import type { ConnectionActor, ConnectionActorDeps, ConnectionLimits } from "../connection/mod.ts";
import { createApp } from "../http/mod.ts";
import type { ServeInfo } from "../http/mod.ts";
import { CloseCode } from "../protocol/mod.ts";
import { ServerMetrics } from "../metrics/mod.ts";
import { createStore } from "../store/mod.ts";
import type { ChatStore } from "../store/mod.ts";
import { defaultMaxConnections } from "./connection_capacity.ts";
import { ConnectionRegistry } from "./connection_registry.ts";
import { DrainController } from "./drain_controller.ts";
import { loadPage } from "./page.ts";
import { StartupError } from "./startup_error.ts";
import { applyTestSeams } from "./test_seams.ts";

/** A built instance. */
export interface AgentsocketServer {
  readonly config: ServerConfig;
  readonly log: Logger;
  /** Given to `Deno.serve`. */
  fetch(request: Request, info: ServeInfo): Response | Promise<Response>;
  /** Starts background work (readiness probe, leases, reaper); resolves after the first probe. */
  start(): Promise<void>;
  /** Drains (`docs/protocol.md#close-codes`, 1012) and resolves when every run ended and every socket closed. */
  drain(): Promise<void>;
  /** Stops timers and closes the store and engine connections. */
  close(): Promise<void>;
  /**
   * Rejects when the instance cannot go on at all (a schema migration failed): `main.ts`
   * prints the one-line reason and exits 1. Never resolves.
   */
  readonly fatal: Promise<never>;
  readonly metrics: ServerMetrics;
  readonly detector: RaceConditionDetector;
  readonly registry: ConnectionRegistry;
}

/** What code gives an instance besides its configuration: the embedding API, and test seams. */
export interface BuildOptions {
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Another agent behind the same interface (the default is the one `config.llm` names). */
  readonly agent?: Agent;
  /** The tools; default: the demo tools with a built-in agent, none with `agent`. */
  readonly tools?: readonly AnyTool[];
  /** The host application's `beforeRun` and `onUsage`. */
  readonly hooks?: RunHooks;
  /** How long `beforeRun` may take. @default 3000 */
  readonly hookTimeoutMs?: number;
  /** Where every route is mounted (checked). @default "" */
  readonly basePath?: string;
  /** Serve the chat page. @default true */
  readonly page?: boolean;
  /** Serve `POST /auth/dev-token` in development. @default true */
  readonly devTokens?: boolean;
  /** How a bad setting found while building is named. @default the environment variable */
  readonly naming?: SettingNaming;
  readonly store?: ChatStore;
  readonly engine?: EventEngine;
}

/**
 * Builds an instance.
 *
 * @param config The validated configuration.
 * @param options Seams for tests.
 */
export async function buildServer(
  config: ServerConfig,
  options: BuildOptions = {},
): Promise<AgentsocketServer> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger(config.logLevel);
  const naming = options.naming ?? ENV_NAMING;
  const production = config.appEnv === "production";

  // Each folder builds its own part from its settings: a new store, engine or agent is one
  // file in its folder and one line in that folder's factory. What can still be refused (a
  // tool, a key) comes before the store and the engine, so a refusal leaves no connection open.
  const tools = toolRegistry(options.tools ?? defaultTools(config, options, clock), {
    requireApproval: config.llm.toolsRequireApproval,
    naming,
  });
  const auth = await createVerifier({
    ...config.jwt,
    devTokens: !production && options.devTokens !== false,
  }).catch((error: Error) => {
    throw naming.error("jwt.publicKey", error.message.replace(/^JWT_PUBLIC_KEY /, ""));
  });
  const store = options.store ?? await createStore(config, { clock, log });
  const engine = options.engine ?? await createEngine(config, { clock, log });
  const agent = options.agent ?? createAgent({ ...config.llm, ...config.agent }, { clock, log });
  // Test-only knobs (refused in production) bend these parts here and nowhere else.
  const { verifier, handshakeEngine, guards } = applyTestSeams(config.testing, {
    verifier: auth.verifier,
    engine,
    clock,
    log,
  });
  const devTokens = auth.devTokens;

  const fatal = Promise.withResolvers<never>();
  fatal.promise.catch(() => {}); // main awaits it; nothing else must see it unhandled
  const probes: Record<string, () => Promise<void>> = {};
  if (store.kind !== "memory") {
    probes[store.kind] = async () => {
      try {
        await store.ping();
      } catch (error) {
        if (error instanceof Error && error.name === "MigrationError") {
          fatal.reject(new StartupError(oneLine(error.message)));
        }
        throw error;
      }
    };
  }
  if (engine.shared) probes[engine.kind] = () => engine.ping();
  const readiness = new ConnectionReadinessChecker({
    clock,
    probes,
    intervalMs: config.readinessProbeIntervalMs,
    log,
  });

  const registry = new ConnectionRegistry();
  const detector = new RaceConditionDetector({
    onViolation: (kind, detail) => log.error("race violation", { kind, detail }),
  });

  // Read only at render time, once everything below exists.
  const metrics: ServerMetrics = new ServerMetrics({
    openConnections: () => registry.size,
    raceViolations: () => detector.counts(),
    dependencies: () =>
      Object.entries(readiness.report().checks).map((
        [name, check],
      ) => [name, check.status === "up"]),
    activeRuns: () => orchestrator.activeRunCount(),
  });
  const orchestrator: RunOrchestrator = new RunOrchestrator({
    store,
    engine,
    agent,
    tools,
    clock,
    log,
    instanceId: config.instanceId,
    leaseMs: config.runLeaseMs,
    streamFlushMs: config.llm.streamFlushMs,
    toolOutputMaxBytes: config.llm.toolOutputMaxBytes,
    maxActiveRunsPerUser: config.llm.maxActiveRunsPerUser,
    approvalTimeoutMs: config.llm.toolApprovalTimeoutMs,
    hooks: options.hooks,
    hookTimeoutMs: options.hookTimeoutMs,
    onDependencyFailure: (name) => readiness.reportFailure(name),
    observer: {
      onRunStarted: () => metrics.runsTotal.inc({ status: "started" }),
      onRunEnded: (report) => {
        metrics.runsTotal.inc({ status: report.status });
        metrics.recordRunEnd(report);
      },
      onFirstPiece: (ms) => metrics.firstPieceSeconds.observe(ms / 1000),
    },
  });

  const gate = {
    dependenciesReady: () => readiness.dependenciesReady(),
    draining: () => readiness.draining(),
  };
  const coordinator = new HandshakeCoordinator({
    verifier,
    engine: handshakeEngine,
    gate,
    maxConnectionsPerUser: config.limits.maxConnectionsPerUser,
  });
  const actorDeps: ConnectionActorDeps = {
    clock,
    log,
    detector,
    coordinator,
    engine,
    runs: orchestrator,
    verifier,
    gate,
    guards,
    limits: connectionLimits(config),
    observer: {
      onReady: (_actor, ms) => metrics.handshakeSeconds.observe(ms / 1000),
      onClosed: (actor, code) => {
        registry.delete(actor);
        metrics.closeCodes.inc({ code: String(code) });
      },
      onEventSent: () => metrics.eventsDelivered.inc(),
    },
  };

  const maxConnections = config.limits.maxConnections ?? defaultMaxConnections() ??
    Number.POSITIVE_INFINITY;
  if (maxConnections === Number.POSITIVE_INFINITY) {
    log.info("no connection ceiling: set MAX_CONNECTIONS below the open-files limit (ulimit -n)");
  }
  const basePath = options.basePath ?? "";
  const page = options.page === false ? undefined : await loadPage();
  const app = createApp({
    store,
    threads: { delete: (userId, threadId) => orchestrator.deleteThread(userId, threadId) },
    engine,
    verifier,
    devTokens,
    readiness,
    metrics,
    log,
    basePath,
    pageHtml: page?.html,
    staticFiles: page?.files,
    upgrade: {
      actorDeps,
      verifier,
      gate,
      origins: { allowed: config.allowedOrigins, production },
      heartbeatSeconds: config.heartbeatSeconds,
      log,
      atCapacity: () => registry.size >= maxConnections,
      onActor: (actor: ConnectionActor) => {
        registry.add(actor);
        metrics.connectionsTotal.inc();
      },
    },
  });

  const drainController = new DrainController({
    readiness,
    registry,
    orchestrator,
    sharedEngine: engine.shared,
    clock,
    log,
    spreadMs: config.drain.spreadMs,
    timeoutMs: config.drain.timeoutMs,
    closeTimeoutMs: 5_000,
  });

  return {
    config,
    log,
    metrics,
    detector,
    registry,
    fetch: app.fetch,
    async start() {
      orchestrator.start();
      await readiness.start();
    },
    fatal: fatal.promise,
    drain: () => drainController.drain(),
    async close() {
      readiness.stop();
      await orchestrator.stop();
      for (const actor of registry.list()) actor.close(CloseCode.ServiceRestart, "Server stopped");
      await Promise.allSettled([store.close(), engine.close()]);
    },
  };
}

/** The demo tools go with the built-in agents; an agent of the application brings its own. */
function defaultTools(config: ServerConfig, options: BuildOptions, clock: Clock): AnyTool[] {
  if (options.agent) return [];
  return createDemoTools({ clock, workMs: config.agent.stepDelayMs });
}

/** Registers the tools; a bad one, or an approval name no tool has, is a bad setting. */
function toolRegistry(
  tools: readonly AnyTool[],
  options: { requireApproval: readonly string[]; naming: SettingNaming },
): ToolRegistry {
  const names = new Set(tools.map((tool) => tool?.name));
  const unknown = options.requireApproval.find((name) => !names.has(name));
  if (unknown !== undefined) {
    throw options.naming.error(
      "toolsRequireApproval",
      `names "${unknown}", which no tool has (registered: ${[...names].join(", ") || "none"})`,
    );
  }
  try {
    return new ToolRegistry(tools, { requireApproval: options.requireApproval });
  } catch (error) {
    if (!(error instanceof ToolRegistryError)) throw error;
    throw new AgentsocketOptionsError("tools", error.message, { cause: error });
  }
}

/** The limits of every connection, from the configuration. */
function connectionLimits(config: ServerConfig): ConnectionLimits {
  const { limits } = config;
  return {
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    maxFrameBytes: limits.maxFrameBytes,
    maxPreReadyFrames: limits.maxPreReadyFrames,
    maxPendingEvents: 4096,
    maxPendingFrames: 1024,
    slowConsumerBytes: limits.slowConsumerBytes,
    slowConsumerTimeoutMs: limits.slowConsumerTimeoutMs,
    clockToleranceSeconds: config.jwt.clockToleranceSeconds,
    rateLimitPerSecond: limits.rateLimitPerSecond,
    rateLimitBurst: limits.rateLimitBurst,
    closeTimeoutMs: 5_000,
    closeLingerMs: limits.closeLingerMs,
    closeLingerMaxMs: 1_000,
  };
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
