/**
 * A tiny structured logger: one JSON object per line on stderr, so logs stay greppable and
 * machine-readable without a dependency.
 *
 * @module
 */

/** Severity of a log line, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Writes structured log lines at or above a level. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/**
 * Creates a logger that writes JSON lines to `write` (stderr by default).
 *
 * @param level The lowest level written.
 * @param write Where each line goes.
 */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => console.error(line),
): Logger {
  const min = RANK[level];
  const emit = (lvl: LogLevel, message: string, fields?: LogFields) => {
    if (RANK[lvl] < min) return;
    write(JSON.stringify({ ts: new Date().toISOString(), level: lvl, msg: message, ...fields }));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/** A logger that writes nothing, for tests. */
export const silentLogger: Logger = createLogger("silent");

/** Renders an unknown thrown value as a short message for a log field. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
