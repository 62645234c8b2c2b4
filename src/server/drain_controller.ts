/**
 * Graceful shutdown (`docs/protocol.md#close-codes`, 1012). On SIGTERM or SIGINT the instance
 * reports `draining`; new upgrades are accepted and closed with 1012 (by the upgrade route) and
 * chats get `draining`.
 * With a shared engine (Redis) every socket is closed with 1012 at once, spread over a moment,
 * while the runs finish and reach the clients that resumed elsewhere; with the memory engine a
 * socket stays open until its user's runs end. Runs still going at the drain timeout end
 * `agent_failed` (`shutdown`).
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { RunOrchestrator } from "../runs/mod.ts";
import type { ConnectionActor, ConnectionReadinessChecker } from "../connection/mod.ts";
import type { ConnectionRegistry } from "./connection_registry.ts";

/** Options of {@link DrainController}. */
export interface DrainOptions {
  readonly readiness: ConnectionReadinessChecker;
  readonly registry: ConnectionRegistry;
  readonly orchestrator: RunOrchestrator;
  /** True when other instances share the event log (Redis). */
  readonly sharedEngine: boolean;
  readonly clock: Clock;
  readonly log: Logger;
  /** Closes are spread uniformly over this many ms. @default 1000 */
  readonly spreadMs: number;
  /** Runs get this long to finish. @default 30000 */
  readonly timeoutMs: number;
  /** How long to wait for sockets to finish closing after the last close was sent. */
  readonly closeTimeoutMs: number;
  /** Random in [0, 1) (injected for tests). */
  readonly random?: () => number;
}

/** Drains one instance. */
export class DrainController {
  #o: DrainOptions;
  #draining?: Promise<void>;

  constructor(options: DrainOptions) {
    this.#o = options;
  }

  /** Starts the drain (once); resolves when every run ended and every socket closed. */
  drain(): Promise<void> {
    this.#draining ??= this.#run();
    return this.#draining;
  }

  async #run(): Promise<void> {
    const { readiness, registry, orchestrator, log } = this.#o;
    readiness.markDraining();
    log.info("draining", {
      connections: registry.size,
      runs: orchestrator.activeRunCount(),
      sharedEngine: this.#o.sharedEngine,
    });
    const closeIdle = () => {
      for (const actor of registry.list()) {
        if (this.#o.sharedEngine || !this.#hasRuns(actor)) this.#spreadClose(actor);
      }
    };
    closeIdle();
    const stopListening = orchestrator.onRunEnded(() => closeIdle());
    await orchestrator.drain(this.#o.timeoutMs);
    stopListening();
    for (const actor of registry.list()) this.#spreadClose(actor);
    await this.#waitFor(registry.whenEmpty(), this.#o.spreadMs + this.#o.closeTimeoutMs + 1000);
    log.info("drained", { connections: registry.size });
  }

  #hasRuns(actor: ConnectionActor): boolean {
    return actor.userId !== undefined && this.#o.orchestrator.activeRunCount(actor.userId) > 0;
  }

  #spreadClose(actor: ConnectionActor): void {
    actor.drain(Math.floor((this.#o.random ?? Math.random)() * this.#o.spreadMs));
  }

  async #waitFor(promise: Promise<void>, ms: number): Promise<void> {
    let timer: Timer | undefined;
    await Promise.race([
      promise,
      new Promise<void>((resolve) => {
        timer = this.#o.clock.setTimer(resolve, ms);
      }),
    ]);
    timer?.cancel();
  }
}
