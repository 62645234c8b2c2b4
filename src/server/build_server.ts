/**
 * Builds one agentsocket instance from its configuration: the store and the event engine
 * (memory, or PostgreSQL and Redis), token verification, the run orchestrator, the readiness
 * checker, the connection core and the HTTP app, and the drain.
 *
 * @module
 */
import { systemClock } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import { delay } from "../_util/clock.ts";
import { createLogger } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { createDemoTools, DemoAgent } from "../agent/mod.ts";
import type { Agent } from "../agent/mod.ts";
import { createLlmAgent } from "../agent/llm/mod.ts";
import { RunOrchestrator } from "../runs/mod.ts";
import { ToolRegistry, ToolRegistryError } from "../tools/mod.ts";
import { DevTokenIssuer, JwtVerifier, randomSecret } from "../auth/mod.ts";
import type { VerificationKey } from "../auth/mod.ts";
import type { EventEngine } from "../bus/mod.ts";
import { MemoryEngine } from "../bus/memory_engine.ts";
import type { Config } from "../config/mod.ts";
import {
  ConnectionReadinessChecker,
  HandshakeCoordinator,
  RaceConditionDetector,
} from "../connection/mod.ts";
import type {
  ConnectionActor,
  ConnectionActorDeps,
  ConnectionGuards,
  TokenVerifier,
} from "../connection/mod.ts";
import { createApp } from "../http/create_app.ts";
import { CloseCode } from "../protocol/mod.ts";
import type { ServeInfo } from "../http/create_app.ts";
import { ServerMetrics } from "../metrics/mod.ts";
import type { ChatStore } from "../store/mod.ts";
import { MemoryStore } from "../store/memory_store.ts";
import { defaultMaxConnections } from "./connection_capacity.ts";
import { ConnectionRegistry } from "./connection_registry.ts";
import { DrainController } from "./drain_controller.ts";
import { loadPage } from "./page.ts";
import { StartupError } from "./startup_error.ts";

/** A built instance. */
export interface AgentsocketServer {
  readonly config: Config;
  readonly log: Logger;
  /** Given to `Deno.serve`. */
  fetch(request: Request, info: ServeInfo): Response | Promise<Response>;
  /** Starts background work (readiness probe, leases, reaper); resolves after the first probe. */
  start(): Promise<void>;
  /** Drains (SPEC §6) and resolves when every run ended and every socket closed. */
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

/** Seams for tests and embedders. */
export interface BuildOptions {
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Another agent behind the same interface (the default is the demo agent). */
  readonly agent?: Agent;
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
  config: Config,
  options: BuildOptions = {},
): Promise<AgentsocketServer> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger(config.logLevel);
  const production = config.appEnv === "production";

  const { store, engine } = await createDependencies(config, { clock, log, ...options });

  const devSecret = config.jwt.key.kind === "dev_secret" ? randomSecret() : undefined;
  const verificationKey: VerificationKey = config.jwt.key.kind === "dev_secret"
    ? { kind: "secret", secret: devSecret! }
    : config.jwt.key.kind === "secret"
    ? { kind: "secret", secret: new TextEncoder().encode(config.jwt.key.secret) }
    : config.jwt.key.kind === "jwks"
    ? { kind: "jwks", url: config.jwt.key.url }
    : { kind: "public_key", key: config.jwt.key.key };
  const jwtVerifier = new JwtVerifier({
    key: verificationKey,
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
    clockToleranceSeconds: config.jwt.clockToleranceSeconds,
  });
  try {
    await jwtVerifier.ready();
  } catch (error) {
    throw new StartupError(
      `Invalid configuration: JWT_PUBLIC_KEY ${
        (error as Error).message.replace(/^JWT_PUBLIC_KEY /, "")
      }`,
    );
  }
  let verifier: TokenVerifier = jwtVerifier;
  if (config.testing.verifyDelayMs > 0) {
    verifier = withVerifyDelay(jwtVerifier, config.testing.verifyDelayMs, clock);
  }
  const signingSecret = devSecret ??
    (config.jwt.key.kind === "secret"
      ? new TextEncoder().encode(config.jwt.key.secret)
      : undefined);
  const devTokens = !production && signingSecret
    ? new DevTokenIssuer({
      secret: signingSecret,
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
    })
    : undefined;

  const fatal = Promise.withResolvers<never>();
  fatal.promise.catch(() => {}); // main awaits it; nothing else must see it unhandled
  const probes: Record<string, () => Promise<void>> = {};
  if (store.kind === "postgres") {
    probes.postgres = async () => {
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
  if (engine.kind === "redis") probes.redis = () => engine.ping();
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

  const agent = options.agent ??
    (config.llm.agent === "llm" && config.llm.settings
      ? createLlmAgent(config.llm.settings, { clock, log })
      : new DemoAgent({
        clock,
        stepDelayMs: config.agent.stepDelayMs,
        thinkingSteps: config.agent.thinkingSteps,
      }));
  let tools: ToolRegistry;
  try {
    tools = new ToolRegistry(createDemoTools({ clock, workMs: config.agent.stepDelayMs }), {
      requireApproval: config.llm.toolsRequireApproval,
    });
  } catch (error) {
    if (!(error instanceof ToolRegistryError)) throw error;
    throw new StartupError(`Invalid configuration: TOOLS_REQUIRE_APPROVAL ${error.message}`);
  }
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
  const guardsOff = new Set(config.testing.guardsOff);
  const guards: Partial<ConnectionGuards> = {
    waitForOpen: !guardsOff.has("wait_for_open"),
    queueBeforeReady: !guardsOff.has("queue_before_ready"),
    holdEventsUntilReady: !guardsOff.has("hold_events_until_ready"),
    dedupeBySeq: !guardsOff.has("dedupe_by_seq"),
  };
  if (guardsOff.size > 0) log.warn("UNSAFE: race guards switched off", { guards: [...guardsOff] });

  const { subscribeDelayMs, catchUpDelayMs } = config.testing;
  const handshakeEngine = subscribeDelayMs > 0 || catchUpDelayMs > 0
    ? withHandshakeDelays(engine, { subscribeDelayMs, catchUpDelayMs }, clock)
    : engine;
  const coordinator = new HandshakeCoordinator({
    verifier,
    engine: handshakeEngine,
    gate,
    maxConnectionsPerUser: config.limits.maxConnectionsPerUser,
    subscribeBeforeCatchUp: !guardsOff.has("subscribe_before_catch_up"),
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
    limits: {
      handshakeTimeoutMs: config.limits.handshakeTimeoutMs,
      maxFrameBytes: config.limits.maxFrameBytes,
      maxPreReadyFrames: config.limits.maxPreReadyFrames,
      maxPendingEvents: 4096,
      maxPendingFrames: 1024,
      slowConsumerBytes: config.limits.slowConsumerBytes,
      slowConsumerTimeoutMs: config.limits.slowConsumerTimeoutMs,
      clockToleranceSeconds: config.jwt.clockToleranceSeconds,
      rateLimitPerSecond: config.limits.rateLimitPerSecond,
      rateLimitBurst: config.limits.rateLimitBurst,
      closeTimeoutMs: 5_000,
    },
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
  const page = await loadPage();
  const app = createApp({
    store,
    threads: { delete: (userId, threadId) => orchestrator.deleteThread(userId, threadId) },
    engine,
    verifier,
    devTokens,
    readiness,
    metrics,
    log,
    pageHtml: page.html,
    staticFiles: page.files,
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

async function createDependencies(
  config: Config,
  context: { clock: Clock; log: Logger; store?: ChatStore; engine?: EventEngine },
): Promise<{ store: ChatStore; engine: EventEngine }> {
  const { clock, log } = context;
  const store = context.store ??
    (config.databaseUrl
      ? await createPostgresStore(config, clock, log)
      : new MemoryStore({ clock, chatIdTtlSeconds: config.chatIdTtlSeconds }));
  const engine = context.engine ??
    (config.redisUrl
      ? await createRedisEngine(config, clock, log)
      : new MemoryEngine({ clock, log, retention: config.retention }));
  return { store, engine };
}

async function createPostgresStore(config: Config, clock: Clock, log: Logger): Promise<ChatStore> {
  const { PostgresStore } = await import("../store/postgres_store.ts");
  return new PostgresStore({
    url: config.databaseUrl!,
    clock,
    log,
    chatIdTtlSeconds: config.chatIdTtlSeconds,
  });
}

async function createRedisEngine(config: Config, clock: Clock, log: Logger): Promise<EventEngine> {
  const { RedisEngine } = await import("../bus/redis_engine.ts");
  return new RedisEngine({
    url: config.redisUrl!,
    keyPrefix: config.redisKeyPrefix,
    instanceId: config.instanceId,
    clock,
    log,
    retention: config.retention,
  });
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** Test-only: stretches token verification (TEST_DELAY_VERIFY_MS). */
function withVerifyDelay(verifier: TokenVerifier, ms: number, clock: Clock): TokenVerifier {
  return {
    async verify(token) {
      await delay(clock, ms);
      return await verifier.verify(token);
    },
  };
}

/**
 * Test-only: stretches the handshake's dependencies. TEST_DELAY_SUBSCRIBE_MS waits before the
 * subscription is made (the window a naive read-then-subscribe loses events in);
 * TEST_DELAY_CATCH_UP_MS waits before the catch-up read (the window in which an event arrives
 * both live and in the replay, which a naive handler delivers twice).
 */
function withHandshakeDelays(
  engine: EventEngine,
  delays: { subscribeDelayMs: number; catchUpDelayMs: number },
  clock: Clock,
): EventEngine {
  return new Proxy(engine, {
    get(target, property, receiver) {
      if (property === "subscribe" && delays.subscribeDelayMs > 0) {
        return async (...args: Parameters<EventEngine["subscribe"]>) => {
          await delay(clock, delays.subscribeDelayMs);
          return await target.subscribe(...args);
        };
      }
      if (property === "catchUp" && delays.catchUpDelayMs > 0) {
        return async (...args: Parameters<EventEngine["catchUp"]>) => {
          await delay(clock, delays.catchUpDelayMs);
          return await target.catchUp(...args);
        };
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
