/**
 * The live connections of one process, for counting, draining and `/metrics`.
 *
 * @module
 */
import type { ConnectionActor } from "../connection/mod.ts";

/** A set of live actors that can say when it is empty. */
export class ConnectionRegistry {
  #actors = new Set<ConnectionActor>();
  #emptyWaiters: (() => void)[] = [];

  /** Number of live connections. */
  get size(): number {
    return this.#actors.size;
  }

  add(actor: ConnectionActor): void {
    this.#actors.add(actor);
  }

  delete(actor: ConnectionActor): void {
    this.#actors.delete(actor);
    if (this.#actors.size === 0) {
      for (const resolve of this.#emptyWaiters.splice(0)) resolve();
    }
  }

  /** A snapshot of the live actors. */
  list(): ConnectionActor[] {
    return [...this.#actors];
  }

  /** Resolves when no connection is left. */
  whenEmpty(): Promise<void> {
    if (this.#actors.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.push(resolve));
  }
}
