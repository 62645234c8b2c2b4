/**
 * How many connections one process may hold. Each WebSocket is a file descriptor, and when
 * `accept` hits the open-files limit Deno's server stops for good (every held connection
 * drops): the limit, less a margin for everything else the process opens, is the ceiling.
 *
 * @module
 */

/** Descriptors kept for the listener, PostgreSQL and Redis connections, health checks, files. */
export const DESCRIPTOR_MARGIN = 128;

/** Used when the limit cannot be read (not Linux, or no permission). */
export const FALLBACK_MAX_CONNECTIONS = 10_000;

/**
 * The default connection ceiling: the soft open-files limit (from `/proc/self/limits`) less
 * {@link DESCRIPTOR_MARGIN}.
 *
 * @param readLimits Reads `/proc/self/limits` (injected for tests).
 */
export function defaultMaxConnections(
  readLimits: () => string = () => Deno.readTextFileSync("/proc/self/limits"),
): number {
  let text: string;
  try {
    text = readLimits();
  } catch {
    return FALLBACK_MAX_CONNECTIONS;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1];
  if (soft === undefined) return FALLBACK_MAX_CONNECTIONS;
  if (soft === "unlimited") return 1_000_000;
  return Math.max(1, Number(soft) - DESCRIPTOR_MARGIN);
}
