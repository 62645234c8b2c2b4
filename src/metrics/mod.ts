/**
 * Prometheus metrics.
 *
 * @module
 */
export * from "./metrics_registry.ts";
export * from "./server_metrics.ts";
