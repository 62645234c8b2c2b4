/**
 * Schema migrations for the PostgreSQL store: the SQL files in `./migrations/`,
 * applied in name order, each in its own transaction that first takes a transaction-level
 * advisory lock, so instances starting together apply each file exactly once.
 *
 * @module
 */
import type postgres from "postgres";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { type Logger, silentLogger } from "../_util/log.ts";
import { isConnectionError, toStoreError } from "./_postgres_errors.ts";

/**
 * The migration files, in the order they apply. A new file must be added here (a unit test
 * checks this list against the folder); names are never reused or renamed once released.
 */
export const MIGRATION_FILES: readonly string[] = [
  "0001_init.sql",
  "0002_database_clock.sql",
  "0003_run_usage_and_limits.sql",
];

/** One migration: its file name (its identity in `schema_migrations`) and its SQL. */
export interface Migration {
  readonly name: string;
  readonly sql: string;
}

/**
 * A migration failed for a reason other than the connection (a SQL error, a missing file):
 * retrying will not help, so start-up reports it and exits.
 */
export class MigrationError extends Error {
  /** The file that failed, or `schema_migrations` for the bookkeeping itself. */
  readonly file: string;
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MigrationError";
    this.file = file;
  }
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** The migrations to apply; the files in {@link MIGRATION_FILES} by default. */
  readonly migrations?: readonly Migration[];
  /** Where each applied migration is logged. */
  readonly log?: Logger;
}

/**
 * The advisory lock key of migrations: "agentsoc" read as a 64-bit integer, chosen so that it
 * does not collide with locks other tools take on the same database.
 */
const MIGRATION_LOCK_KEY = "7018141421117878115";

const BOOKKEEPING = "schema_migrations";

/**
 * Reads the migration files shipped beside this module (also inside a `deno compile` binary
 * built with `--include src/store/migrations`).
 *
 * @throws {MigrationError} When a file cannot be read.
 */
export async function loadMigrations(): Promise<Migration[]> {
  const migrations: Migration[] = [];
  for (const name of MIGRATION_FILES) {
    const url = new URL(`./migrations/${name}`, import.meta.url);
    try {
      migrations.push({ name, sql: await Deno.readTextFile(url) });
    } catch (error) {
      throw new MigrationError(
        name,
        `Cannot read migration "${name}" at ${url.href}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return migrations;
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`. Each runs in one
 * transaction that holds `pg_advisory_xact_lock` on that transaction's connection (a
 * session lock could be taken and released on different pooled connections), checks
 * `schema_migrations` under the lock, applies the file and records it. Safe to call from
 * many instances at once and any number of times.
 *
 * @param sql The connection pool.
 * @returns The names of the migrations this call applied (empty when up to date).
 * @throws {DependencyUnavailableError} When PostgreSQL cannot be reached: retry later.
 * @throws {MigrationError} When a migration fails otherwise: fatal, the message names the file.
 */
export async function migrate(sql: postgres.Sql, options: MigrateOptions = {}): Promise<string[]> {
  const log = options.log ?? silentLogger;
  const migrations = options.migrations ?? await loadMigrations();
  const applied: string[] = [];
  for (const migration of migrations) {
    let stage = BOOKKEEPING;
    try {
      const ran = await sql.begin(async (tx) => {
        // A long migration elsewhere makes us wait on the lock: no statement timeout here.
        await tx`SET LOCAL statement_timeout = 0`;
        await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`;
        await tx`
          CREATE TABLE IF NOT EXISTS schema_migrations (
            name text PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
          )`;
        const done = await tx`SELECT 1 FROM schema_migrations WHERE name = ${migration.name}`;
        if (done.length > 0) return false;
        stage = migration.name;
        await tx.unsafe(migration.sql);
        stage = BOOKKEEPING;
        await tx`INSERT INTO schema_migrations (name) VALUES (${migration.name})`;
        return true;
      });
      if (ran) {
        applied.push(migration.name);
        log.info("migration applied", { migration: migration.name });
      }
    } catch (error) {
      if (isConnectionError(error)) throw toStoreError(error) as DependencyUnavailableError;
      const what = stage === BOOKKEEPING
        ? `Cannot record migrations in "${BOOKKEEPING}"`
        : `Migration "${stage}" failed`;
      throw new MigrationError(stage, `${what}: ${describe(error)}`, { cause: error });
    }
  }
  return applied;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const { code, position } = error as { code?: unknown; position?: unknown };
  const details = [
    typeof code === "string" ? `SQLSTATE ${code}` : "",
    typeof position === "string" && position !== "" ? `at character ${position}` : "",
  ].filter(Boolean).join(", ");
  return details === "" ? error.message : `${error.message} (${details})`;
}
