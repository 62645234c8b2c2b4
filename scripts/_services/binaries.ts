/**
 * Where the local PostgreSQL and Redis server programs are, for throwaway servers.
 *
 * Environment overrides (mostly for tests, which hide the binaries with them):
 * - `AGENTSOCKET_POSTGRES_BIN`: a folder holding `postgres` and `initdb`, tried first.
 * - `AGENTSOCKET_POSTGRES_ROOTS`: `:`-separated folders searched for `bin/` or `<version>/bin/`
 *   after the `PATH` (default {@link DEFAULT_POSTGRES_ROOTS}).
 * - `AGENTSOCKET_REDIS_SERVER`: the `redis-server` program, tried before the `PATH`.
 *
 * @module
 */

/** Folders searched for PostgreSQL server binaries when they are not on the `PATH`. */
export const DEFAULT_POSTGRES_ROOTS = [
  "/usr/lib/postgresql", // Debian, Ubuntu: /usr/lib/postgresql/<version>/bin
  "/usr/local/pgsql", // built from source
  "/opt/homebrew/opt/postgresql", // Homebrew on Apple silicon
  "/usr/local/opt/postgresql", // Homebrew on Intel
] as const;

/** The PostgreSQL server binaries: `bin` holds `postgres` and `initdb`. */
export interface PostgresBinaries {
  /** The folder of `postgres` and `initdb`. */
  bin: string;
}

/**
 * Finds a folder with both `postgres` and `initdb`: `AGENTSOCKET_POSTGRES_BIN`, then the
 * `PATH`, then the search roots (newest version first). Debian keeps them off the `PATH`.
 *
 * @returns The folder, or `null` when PostgreSQL's server is not installed.
 */
export async function findPostgresBinaries(): Promise<PostgresBinaries | null> {
  const candidates: string[] = [];
  const explicit = Deno.env.get("AGENTSOCKET_POSTGRES_BIN");
  if (explicit) candidates.push(explicit);
  candidates.push(...pathDirs());
  const roots = Deno.env.get("AGENTSOCKET_POSTGRES_ROOTS")?.split(":").filter(Boolean) ??
    DEFAULT_POSTGRES_ROOTS;
  for (const root of roots) {
    candidates.push(`${root}/bin`);
    for (const version of await versionDirs(root)) candidates.push(`${root}/${version}/bin`);
  }
  for (const dir of candidates) {
    if (await isExecutable(`${dir}/postgres`) && await isExecutable(`${dir}/initdb`)) {
      return { bin: dir };
    }
  }
  return null;
}

/**
 * Finds `redis-server`: `AGENTSOCKET_REDIS_SERVER`, then the `PATH`.
 *
 * @returns Its path, or `null` when it is not installed.
 */
export async function findRedisServer(): Promise<string | null> {
  const explicit = Deno.env.get("AGENTSOCKET_REDIS_SERVER");
  if (explicit && await isExecutable(explicit)) return explicit;
  return await findOnPath("redis-server");
}

/**
 * Finds `name` in the folders of the `PATH`.
 *
 * @param extraDirs Searched after the `PATH` (for system tools such as `setpriv`).
 * @returns Its path, or `null`.
 */
export async function findOnPath(
  name: string,
  extraDirs: readonly string[] = [],
): Promise<string | null> {
  for (const dir of [...pathDirs(), ...extraDirs]) {
    if (await isExecutable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

function pathDirs(): string[] {
  return (Deno.env.get("PATH") ?? "").split(":").filter(Boolean);
}

/** Names of `<root>/<version>` folders, highest version first ("16" before "9.6"). */
async function versionDirs(root: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(root)) {
      if (entry.isDirectory && /^\d+(\.\d+)?$/.test(entry.name)) names.push(entry.name);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw error;
  }
  return names.sort((a, b) => Number(b) - Number(a));
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && (info.mode === null || (info.mode & 0o111) !== 0);
  } catch {
    return false;
  }
}
