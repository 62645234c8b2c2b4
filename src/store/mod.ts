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

/** Builds one kind of store from the configuration. */
export type StoreMaker = (config: StoreConfig, deps: StoreDeps) => Promise<ChatStore>;

const postgres: StoreMaker = async (config, deps) => {
  const { PostgresStore } = await import("./postgres_store.ts");
  return new PostgresStore({
    url: config.databaseUrl!,
    chatIdTtlSeconds: config.chatIdTtlSeconds,
    ...deps,
  });
};

/**
 * The store each URL scheme of `DATABASE_URL` names: a new store is one new file plus one line
 * here (the configuration accepts exactly these schemes).
 */
export const STORES: Readonly<Record<string, StoreMaker>> = {
  "postgres:": postgres,
  "postgresql:": postgres,
};

/**
 * Builds the store the configuration names: the memory store without a URL, else the one
 * {@link STORES} gives the URL's scheme.
 *
 * @param config The store's settings.
 * @param deps The clock and the logger.
 * @throws {RangeError} for a scheme no store has (the configuration refuses it first).
 */
export async function createStore(config: StoreConfig, deps: StoreDeps): Promise<ChatStore> {
  const { chatIdTtlSeconds } = config;
  if (!config.databaseUrl) return new MemoryStore({ clock: deps.clock, chatIdTtlSeconds });
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*:)/.exec(config.databaseUrl)?.[1].toLowerCase() ?? "";
  const make = STORES[scheme];
  if (!make) throw new RangeError(`Cannot create store: no store for "${scheme}//"`);
  return await make(config, deps);
}
