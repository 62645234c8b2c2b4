/**
 * Stores: threads, messages, runs and chat idempotency keys.
 *
 * `PostgresStore` and the migrations are imported from `./postgres_store.ts` and
 * `./migrate.ts` directly, so that importing this module never loads postgres.js.
 *
 * @module
 */
export * from "./chat_store.ts";
export * from "./memory_store.ts";
