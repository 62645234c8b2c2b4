/**
 * Stores: threads, messages, runs and chat idempotency keys (SPEC §2, §5).
 *
 * @module
 */
export * from "./chat_store.ts";
export * from "./memory_store.ts";
