/**
 * How many connections one process may hold. Each WebSocket is a file descriptor, and when
 * `accept` hits the open-files limit Deno's server stops for good (every held connection
 * drops): the limit, less a margin for everything else the process opens, is the ceiling.
 *
 * @module
 */

/** Descriptors kept for the listener, PostgreSQL and Redis connections, health checks, files. */
export const DESCRIPTOR_MARGIN = 128;

/**
 * The default connection ceiling: the soft open-files limit (from `/proc/self/limits`) less
 * {@link DESCRIPTOR_MARGIN}; undefined when the limit cannot be read — Deno grants reads under
 * `/proc/self` only with `--allow-all` — and then no ceiling is set (the server still survives
 * the descriptor limit: see `keep_listening.ts`).
 *
 * @param readLimits Reads `/proc/self/limits` (injected for tests).
 */
export function defaultMaxConnections(
  readLimits: () => string = () => Deno.readTextFileSync("/proc/self/limits"),
): number | undefined {
  let text: string;
  try {
    text = readLimits();
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1];
  if (soft === undefined || soft === "unlimited") return undefined;
  return Math.max(1, Number(soft) - DESCRIPTOR_MARGIN);
}
