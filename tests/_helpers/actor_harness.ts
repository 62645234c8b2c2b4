/**
 * One connection actor wired to real parts (memory engine, memory store, run orchestrator,
 * demo agent, jose verification) with a fake socket and a manual clock, plus holds that stop a
 * handshake step until the test lets it go: the injected seams the race tests use.
 *
 * @module
 */
import { SignJWT } from "jose";
import { createDemoTools, DemoAgent } from "../../src/agent/mod.ts";
import { RunOrchestrator } from "../../src/runs/mod.ts";
import { ToolRegistry } from "../../src/tools/mod.ts";
import { JwtVerifier } from "../../src/auth/mod.ts";
import { MemoryEngine } from "../../src/bus/memory_engine.ts";
import type { EventEngine, NewEvent } from "../../src/bus/mod.ts";
import {
  ConnectionActor,
  HandshakeCoordinator,
  RaceConditionDetector,
} from "../../src/connection/mod.ts";
import type { ConnectionLimits, Principal, TokenVerifier } from "../../src/connection/mod.ts";
import type { UnsafeGuardName } from "../../src/config/mod.ts";
import { applyTestSeams } from "../../src/server/mod.ts";
import { silentLogger } from "../../src/_util/log.ts";
import { MemoryStore } from "../../src/store/mod.ts";
import { FakeSocket } from "./fake_socket.ts";
import { ManualClock } from "./manual_clock.ts";

export const SECRET = new TextEncoder().encode("unit-test-secret-of-32-bytes-min!");

/** A step of the handshake that a test can hold. */
export class Hold {
  #gate = Promise.withResolvers<void>();
  #reached = Promise.withResolvers<void>();
  held = false;

  /** Blocks the step until {@link release}. */
  hold(): void {
    this.held = true;
  }
  /** Lets it go. */
  release(): void {
    this.#gate.resolve();
  }
  /** Resolves when the step is waiting at the hold. */
  whenReached(): Promise<void> {
    return this.#reached.promise;
  }
  async pass(): Promise<void> {
    if (!this.held) return;
    this.#reached.resolve();
    await this.#gate.promise;
  }
}

/** Options of {@link actorHarness}. */
export interface HarnessOptions {
  /** Guards switched off, through the same test seams as `TEST_UNSAFE_GUARDS_OFF`. */
  readonly guardsOff?: readonly UnsafeGuardName[];
  readonly limits?: Partial<ConnectionLimits>;
  readonly dependenciesReady?: boolean;
  readonly draining?: boolean;
  readonly maxConnectionsPerUser?: number;
  readonly headerPrincipal?: Principal;
  readonly protocolToken?: string;
  /** Shares the engine (and store) with another harness. */
  readonly engine?: MemoryEngine;
  readonly store?: MemoryStore;
  readonly clock?: ManualClock;
  /** Live events with these seqs never reach the actor (a lossy transport). */
  readonly dropLiveSeqs?: ReadonlySet<number>;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 5000,
  maxFrameBytes: 65536,
  maxPreReadyFrames: 64,
  maxPendingEvents: 4096,
  maxPendingFrames: 1024,
  slowConsumerBytes: 1_000_000,
  slowConsumerTimeoutMs: 10_000,
  clockToleranceSeconds: 5,
  rateLimitPerSecond: 1000,
  rateLimitBurst: 1000,
  closeTimeoutMs: 5000,
  // Off here: most tests close right after a frame, on a clock that only moves when told to.
  closeLingerMs: 0,
  closeLingerMaxMs: 1000,
};

/** An actor under test and everything around it. */
export type Harness = Awaited<ReturnType<typeof actorHarness>>;

/**
 * Builds an actor (not opened yet) and its surroundings.
 */
export function actorHarness(options: HarnessOptions = {}) {
  const clock = options.clock ?? new ManualClock(Date.now());
  const engine = options.engine ??
    new MemoryEngine({ clock, retention: { count: 10_000, seconds: 3600 } });
  const store = options.store ?? new MemoryStore({ clock });
  const holds = { verify: new Hold(), subscribe: new Hold(), catchUp: new Hold() };
  const realVerifier = new JwtVerifier({
    key: { kind: "secret", secret: SECRET },
    now: () => clock.now(),
  });
  const verifier: TokenVerifier = {
    async verify(token) {
      await holds.verify.pass();
      return await realVerifier.verify(token);
    },
  };
  const heldEngine: EventEngine = new Proxy(engine, {
    get(target, property) {
      if (property === "subscribe") {
        return async (...[userId, listener]: Parameters<EventEngine["subscribe"]>) => {
          await holds.subscribe.pass();
          const drop = options.dropLiveSeqs;
          return await target.subscribe(
            userId,
            drop ? (event, epoch) => drop.has(event.seq) || listener(event, epoch) : listener,
          );
        };
      }
      if (property === "catchUp") {
        return async (...args: Parameters<EventEngine["catchUp"]>) => {
          await holds.catchUp.pass();
          return await target.catchUp(...args);
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const gate = { ready: options.dependenciesReady ?? true, draining: options.draining ?? false };
  const serverGate = { dependenciesReady: () => gate.ready, draining: () => gate.draining };
  const detector = new RaceConditionDetector();
  const orchestrator = new RunOrchestrator({
    store,
    engine,
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    tools: new ToolRegistry(createDemoTools({ clock })),
    clock,
    log: silentLogger,
    instanceId: "unit",
  });
  const seams = applyTestSeams(
    {
      verifyDelayMs: 0,
      subscribeDelayMs: 0,
      catchUpDelayMs: 0,
      guardsOff: options.guardsOff ?? [],
    },
    { verifier, engine: heldEngine, clock, log: silentLogger },
  );
  const coordinator = new HandshakeCoordinator({
    verifier,
    engine: seams.handshakeEngine,
    gate: serverGate,
    maxConnectionsPerUser: options.maxConnectionsPerUser ?? 10,
  });
  const closedCodes: number[] = [];
  const socket = new FakeSocket();
  const actor = new ConnectionActor(
    {
      clock,
      log: silentLogger,
      detector,
      coordinator,
      engine,
      runs: orchestrator,
      verifier,
      gate: serverGate,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      guards: seams.guards,
      observer: { onClosed: (_actor, code) => closedCodes.push(code) },
    },
    socket,
    { headerPrincipal: options.headerPrincipal, protocolToken: options.protocolToken },
  );

  return {
    clock,
    engine,
    store,
    holds,
    gate,
    detector,
    orchestrator,
    socket,
    actor,
    closedCodes,
    /** Opens the socket, as Deno's `open` event does. */
    open() {
      socket.open();
      actor.opened();
    },
    /** Sends a frame from the client. */
    send(frame: unknown) {
      actor.receive(typeof frame === "string" ? frame : JSON.stringify(frame));
    },
    /** A token for `userId`, valid for `ttlSeconds`. */
    token(userId = "alice", ttlSeconds = 3600) {
      return signToken(userId, Math.floor(clock.now() / 1000) + ttlSeconds);
    },
    /** Publishes an event for a user straight into the engine. */
    publish(userId: string, event: Partial<NewEvent> = {}) {
      return engine.publish(userId, {
        threadId: "t1",
        runId: "r1",
        name: "agent_thinking",
        data: {},
        ts: new Date(clock.now()).toISOString(),
        ...event,
      });
    },
    /** Stops background work. */
    async dispose() {
      await orchestrator.stop();
      if (!options.engine) await engine.close();
      if (!options.store) await store.close();
    },
  };
}

/** Signs an HS256 token with the harness secret. */
export function signToken(userId: string, exp: number): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(userId).setExpirationTime(
    exp,
  )
    .sign(SECRET);
}
