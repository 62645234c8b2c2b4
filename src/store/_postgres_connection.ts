/**
 * Every connection setting postgres.js would otherwise take from the process environment, made
 * explicit from the URL alone. postgres.js fills what the URL leaves out from `PGHOST`,
 * `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSL`, `PGTARGETSESSIONATTRS` and a
 * `PG<OPTION>` variable per option; an application that embeds agentsocket may well have them
 * set for its own database, and ours must not pick them up. (postgres.js still reads
 * `PGAPPNAME` whatever it is given, and our `application_name` overrides its value.)
 *
 * @module
 */

/** The options postgres.js reads from `PG<OPTION>` unless given, with postgres.js's defaults. */
const ENV_FALLBACK_DEFAULTS = {
  max: 10,
  ssl: false,
  sslnegotiation: null,
  idle_timeout: null,
  connect_timeout: 30,
  max_lifetime: () => 60 * (30 + Math.random() * 30),
  max_pipeline: 100,
  backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 20),
  keep_alive: 60,
  prepare: true,
  debug: false,
  fetch_types: true,
  publications: "alltables",
} as const;

/** The user when the URL names none (PostgreSQL's own superuser; libpq would ask the OS). */
export const DEFAULT_POSTGRES_USER = "postgres";

/**
 * The connection options that leave postgres.js nothing to read from the environment: the
 * host, port, user, password and database from the URL (defaults: `localhost`, 5432,
 * {@link DEFAULT_POSTGRES_USER}, no password, the user's name), and every other option at
 * postgres.js's default unless the URL's query sets it (`?sslmode=require`).
 *
 * @param url A single-host `postgres://` URL.
 * @returns Options to spread under the caller's own.
 */
export function explicitConnection(url: string): Record<string, unknown> {
  const parsed = new URL(url);
  const query = new Set(
    [...parsed.searchParams.keys()].map((key) => key === "sslmode" ? "ssl" : key),
  );
  const username = decodeURIComponent(parsed.username) || DEFAULT_POSTGRES_USER;
  const password = decodeURIComponent(parsed.password);
  const options: Record<string, unknown> = {
    host: decodeURIComponent(parsed.hostname) || "localhost",
    port: parsed.port === "" ? 5432 : Number(parsed.port),
    username,
    database: decodeURIComponent(parsed.pathname.slice(1)) || username,
    // A function, never a falsy string: postgres.js would fall back to PGPASSWORD for "".
    password: () => password,
    // Any truthy value stops the PGTARGETSESSIONATTRS fallback; we write, so we want a primary.
    "target_session_attrs": parsed.searchParams.get("target_session_attrs") ?? "read-write",
  };
  for (const [key, value] of Object.entries(ENV_FALLBACK_DEFAULTS)) {
    if (!query.has(key)) options[key] = value;
  }
  return options;
}
