/**
 * Stores: threads, messages, runs and chat idempotency keys (`docs/protocol.md#rest`).
 *
 * {@link createStore} builds the one the configuration names. `PostgresStore` and the
 * migrations are loaded only when a database is configured (import `./postgres_store.ts` and
 * `./migrate.ts` directly otherwise), so that importing this module never loads postgres.js.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { ChatStore } from "./chat_store.ts";
import { MemoryStore } from "./memory_store.ts";

export * from "./chat_store.ts";
export * from "./memory_store.ts";

/** What {@link createStore} reads of the configuration. */
export interface StoreConfig {
  /** PostgreSQL (`DATABASE_URL`); absent: the in-memory store. */
  readonly databaseUrl?: string;
  /** How long a chat id stays an idempotency key, in seconds. */
  readonly chatIdTtlSeconds: number;
}

/** What every store is given. */
export interface StoreDeps {
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Builds the store the configuration names: one line per kind of store.
 *
 * @param config The store's settings.
 * @param deps The clock and the logger.
 */
export async function createStore(config: StoreConfig, deps: StoreDeps): Promise<ChatStore> {
  const { chatIdTtlSeconds } = config;
  if (config.databaseUrl) {
    const { PostgresStore } = await import("./postgres_store.ts");
    return new PostgresStore({ url: config.databaseUrl, chatIdTtlSeconds, ...deps });
  }
  return new MemoryStore({ clock: deps.clock, chatIdTtlSeconds });
}
