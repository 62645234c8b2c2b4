/**
 * The actor's mailbox (`Fifo`): enqueue and dequeue, one at a time and in bursts, and one event
 * through a whole actor (engine publish → mailbox → detector → `socket.send`).
 * A `[xN]` suffix means the measured function does N operations; `run.ts` divides by N.
 *
 * @module
 */
import { Fifo } from "../../src/_util/fifo.ts";
import { systemClock } from "../../src/_util/clock.ts";
import { silentLogger } from "../../src/_util/log.ts";
import { MemoryEngine } from "../../src/bus/memory_engine.ts";
import {
  ConnectionActor,
  HandshakeCoordinator,
  RaceConditionDetector,
} from "../../src/connection/mod.ts";
import type { ConnectionLimits, SocketPort } from "../../src/connection/mod.ts";

const item = { kind: "event" as const, seq: 1 };
let sink: unknown;

const single = new Fifo<typeof item>();
Deno.bench("Fifo push + shift", { group: "mailbox" }, () => {
  single.push(item);
  sink = single.shift();
});

const burst = new Fifo<typeof item>();
Deno.bench("Fifo 64 pushes then 64 shifts [x64]", { group: "mailbox" }, () => {
  for (let i = 0; i < 64; i++) burst.push(item);
  for (let i = 0; i < 64; i++) sink = burst.shift();
});

// ---- one event through a real actor ---------------------------------------------------------

const EVENTS_PER_ITERATION = 100;

const LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 5000,
  maxFrameBytes: 65536,
  maxPreReadyFrames: 64,
  maxPendingEvents: 4096,
  maxPendingFrames: 1024,
  slowConsumerBytes: 1_048_576,
  slowConsumerTimeoutMs: 10_000,
  clockToleranceSeconds: 5,
  rateLimitPerSecond: 50,
  rateLimitBurst: 100,
  closeTimeoutMs: 5000,
};

/** A socket that is open, never congested, and only counts what it is sent. */
class CountingSocket implements SocketPort {
  readyState = 1;
  bufferedAmount = 0;
  sent = 0;
  #waiter?: { count: number; resolve: () => void };
  send(): void {
    this.sent++;
    if (this.#waiter && this.sent >= this.#waiter.count) {
      this.#waiter.resolve();
      this.#waiter = undefined;
    }
  }
  close(): void {
    this.readyState = 3;
  }
  whenSent(count: number): Promise<void> {
    if (this.sent >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiter = { count, resolve });
  }
}

const engine = new MemoryEngine({ retention: { count: 1000, seconds: 3600 } });
const gate = { dependenciesReady: () => true, draining: () => false };
const verifier = { verify: () => Promise.resolve({ userId: "bench", exp: 4_000_000_000 }) };
const actorSocket = new CountingSocket();
const actor = new ConnectionActor({
  clock: systemClock,
  log: silentLogger,
  detector: new RaceConditionDetector(),
  coordinator: new HandshakeCoordinator({ verifier, engine, gate, maxConnectionsPerUser: 10 }),
  engine,
  runs: {
    startChat: () => Promise.reject(new Error("not in this bench")),
    cancel: () => Promise.reject(new Error("not in this bench")),
    approve: () => Promise.reject(new Error("not in this bench")),
  },
  verifier,
  gate,
  limits: LIMITS,
}, actorSocket);
actor.opened();
actor.receive(JSON.stringify({ type: "hello", token: "bench" }));
await actor.readiness.whenReached("processing_ready");
const data = { text: "Thinking (12/100)" };

Deno.bench(
  `event through the actor, publish → socket.send [x${EVENTS_PER_ITERATION}]`,
  { group: "actor" },
  async () => {
    const target = actorSocket.sent + EVENTS_PER_ITERATION;
    const ts = new Date().toISOString();
    for (let i = 0; i < EVENTS_PER_ITERATION; i++) {
      await engine.publish("bench", {
        threadId: "t1",
        runId: "r1",
        name: "agent_thinking",
        data,
        ts,
      });
    }
    await actorSocket.whenSent(target);
  },
);

globalThis.addEventListener("unload", () => {
  actor.close(1000, "bench over");
  void engine.close();
  if (sink === null) console.log(sink);
});
