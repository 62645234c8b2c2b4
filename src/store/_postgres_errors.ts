/**
 * Tells a PostgreSQL outage (refused, reset, closed, timed out, shutting down) from a fault in
 * a query, so that only the first becomes a {@link DependencyUnavailableError}.
 *
 * @module
 */
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";

/** The name `/health/ready` uses for PostgreSQL. */
export const POSTGRES_DEPENDENCY = "postgres";

// postgres.js's own connection errors, and Node-style socket errno codes.
const CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EADDRNOTAVAIL",
]);

// Deno's own network errors, should one surface without a Node code.
const CONNECTION_ERROR_NAMES = new Set([
  "ConnectionRefused",
  "ConnectionReset",
  "ConnectionAborted",
  "NotConnected",
  "BrokenPipe",
  "TimedOut",
  "AddrNotAvailable",
  "NetworkUnreachable",
]);

/**
 * Whether `error` means PostgreSQL could not be reached or stopped answering, rather than
 * that a query was wrong.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (CONNECTION_ERROR_NAMES.has(error.name)) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return false;
  if (CONNECTION_CODES.has(code)) return true;
  if (error.name !== "PostgresError") return false;
  return code.startsWith("08") || // connection exception
    code.startsWith("53") || // insufficient resources (too many connections, out of memory)
    code.startsWith("57P") || // shutting down, starting up, database dropped
    code === "57014" || // statement timeout
    code === "3D000" || // database does not exist (yet)
    code.startsWith("28"); // authentication failed: configuration, reported as not ready
}

/**
 * Turns a connection failure into a {@link DependencyUnavailableError}; returns any other
 * error unchanged.
 */
export function toStoreError(error: unknown): unknown {
  if (error instanceof DependencyUnavailableError || !isConnectionError(error)) return error;
  return new DependencyUnavailableError(
    POSTGRES_DEPENDENCY,
    `PostgreSQL is unavailable: ${(error as Error).message}`,
    { cause: error },
  );
}
