/**
 * Starting and stopping local server processes for sure.
 *
 * Where util-linux `setpriv` exists, a server is started through it with a parent-death
 * signal, so it dies with the process that started it even when that one is killed. As
 * root, PostgreSQL has to run as the `postgres` user, and `setpriv` (which `exec`s, so the
 * server keeps the pid we signal) drops to it.
 *
 * @module
 */
import { findOnPath } from "./binaries.ts";
import { DeadlineError, withDeadline } from "./poll.ts";

const SYSTEM_DIRS = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] as const;

/** A user to run a server as: name and numeric ids. */
export interface ServiceUser {
  name: string;
  uid: number;
  gid: number;
}

/** Options of {@link spawnServer}. */
export interface SpawnServerOptions {
  /** Runs the server as this user (needs `setpriv`). */
  user?: ServiceUser;
  /** Working folder of the server. */
  cwd?: string;
  /**
   * What becomes of the server's stderr; a piped stderr must be drained by the caller.
   *
   * @default "null"
   */
  stderr?: "null" | "piped";
}

/** True when this process runs as root (PostgreSQL refuses to). */
export function isRoot(): boolean {
  return Deno.build.os !== "windows" && Deno.uid() === 0;
}

/**
 * The `postgres` system user, needed to run PostgreSQL when we are root.
 *
 * @throws {Error} when there is no such user.
 */
export async function postgresUser(): Promise<ServiceUser> {
  const uid = await runCommand("id", ["-u", "postgres"], { timeoutMs: 5_000 });
  const gid = await runCommand("id", ["-g", "postgres"], { timeoutMs: 5_000 });
  if (uid.code !== 0 || gid.code !== 0) {
    throw new Error("Running as root needs a 'postgres' user to start PostgreSQL as");
  }
  return { name: "postgres", uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Spawns a long-running server with stdin and stdout closed.
 *
 * @throws {Error} when `options.user` is given and `setpriv` is missing.
 */
export async function spawnServer(
  program: string,
  args: readonly string[],
  options: SpawnServerOptions = {},
): Promise<Deno.ChildProcess> {
  const setpriv = Deno.build.os === "linux" ? await findOnPath("setpriv", SYSTEM_DIRS) : null;
  if (options.user && !setpriv) {
    throw new Error(`Starting ${program} as user ${options.user.name} needs setpriv (util-linux)`);
  }
  const command = setpriv
    ? new Deno.Command(setpriv, {
      args: [...setprivArgs(options.user), "--", program, ...args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "null",
      stderr: options.stderr ?? "null",
    })
    : new Deno.Command(program, {
      args: [...args],
      cwd: options.cwd,
      stdin: "null",
      stdout: "null",
      stderr: options.stderr ?? "null",
    });
  return command.spawn();
}

function setprivArgs(user: ServiceUser | undefined): string[] {
  const drop = user ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups"] : [];
  // setpriv applies the parent-death signal after changing the credentials.
  return [...drop, "--pdeathsig", "KILL"];
}

/** Sends `signal` to `child`; a process that has already exited is not an error. */
export function signalChild(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (error) {
    if (!(error instanceof TypeError || error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Asks `child` to exit with `signal`, then kills it when it has not within `graceMs`.
 *
 * @returns The exit status.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  signal: Deno.Signal,
  graceMs: number,
): Promise<Deno.CommandStatus> {
  signalChild(child, signal);
  try {
    return await withDeadline(child.status, graceMs, `process ${child.pid} to exit`);
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    signalChild(child, "SIGKILL");
    return await child.status;
  }
}

/** The outcome of {@link runCommand}. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  /** Kills the command after this many milliseconds (it then counts as failed). */
  timeoutMs: number;
  /** Runs it as this user (needs `setpriv`). */
  user?: ServiceUser;
  cwd?: string;
  env?: Record<string, string>;
}

/**
 * Runs a short command to its end and collects its output.
 *
 * @returns Its result; a program that is not installed gives code 127.
 */
export async function runCommand(
  program: string,
  args: readonly string[],
  options: RunCommandOptions,
): Promise<CommandResult> {
  let cmd = program;
  let argv = [...args];
  if (options.user) {
    const setpriv = await findOnPath("setpriv", SYSTEM_DIRS);
    if (!setpriv) {
      throw new Error(`Running ${program} as user ${options.user.name} needs setpriv (util-linux)`);
    }
    cmd = setpriv;
    argv = [...setprivArgs(options.user), "--", program, ...args];
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  try {
    const output = await new Deno.Command(cmd, {
      args: argv,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      signal: controller.signal,
    }).output();
    const decoder = new TextDecoder();
    return {
      code: controller.signal.aborted ? 124 : output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${program}: not found` };
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Keeps the last bytes of a stream (a server's stderr) for error messages, and drains it so
 * the server never blocks on a full pipe.
 */
export class OutputTail {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #limit: number;
  /** Settles when the stream ends: every process holding its write end has exited. */
  readonly done: Promise<void>;
  #reader: ReadableStreamDefaultReader<Uint8Array>;

  /**
   * @param stream The stream to drain.
   * @param limit How many bytes to keep (the most recent).
   */
  constructor(stream: ReadableStream<Uint8Array>, limit = 16_384) {
    this.#limit = limit;
    this.#reader = stream.getReader();
    this.done = this.#drain();
  }

  /** The kept bytes as text. */
  text(): string {
    const all = new Uint8Array(this.#size);
    let offset = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return new TextDecoder().decode(all);
  }

  /** Stops draining (when orphaned children keep the pipe open too long). */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.done;
  }

  async #drain(): Promise<void> {
    try {
      while (true) {
        const { done, value } = await this.#reader.read();
        if (done) return;
        this.#chunks.push(value);
        this.#size += value.length;
        while (this.#size - this.#chunks[0].length >= this.#limit) {
          this.#size -= this.#chunks.shift()!.length;
        }
      }
    } catch {
      // A cancelled or broken pipe ends the drain; the tail kept so far stays readable.
    } finally {
      this.#reader.releaseLock();
    }
  }
}
