/**
 * Starts agentsocket as a real process (`deno run main.ts`) on a free port, the way users run
 * it, and gives tests its URLs, logs, a dev token and its metrics.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import { freePort } from "./services.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Options of {@link startServer}. */
export interface StartServerOptions {
  /** Environment of the process (added to a quiet default). */
  readonly env?: Record<string, string>;
  /** Port to listen on (default: a free one). */
  readonly port?: number;
  /** Wait for `/health/ready` (default), `/health/live`, or nothing. */
  readonly waitFor?: "ready" | "live" | "none";
}

/** A running server process. */
export class ServerProcess {
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  readonly env: Record<string, string>;
  #child: Deno.ChildProcess;
  #logs: string[] = [];
  #status: Promise<Deno.CommandStatus>;
  #pumps: Promise<void>[];

  constructor(port: number, env: Record<string, string>) {
    this.port = port;
    this.env = env;
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys=hostname", MAIN],
      env: { ...env, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status;
    this.#pumps = [this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)];
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Everything the process printed so far. */
  logs(): string {
    return this.#logs.join("");
  }

  /** Resolves with the exit status. */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  /** Sends a signal (default SIGTERM) and waits for the exit status. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
    const status = await this.#status;
    await Promise.all(this.#pumps);
    // E2E_LOG_DIR keeps every server's output for post-mortems of a failed run.
    const dir = Deno.env.get("E2E_LOG_DIR");
    if (dir) {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/server-${this.port}-${this.pid}.log`, this.logs());
    }
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }

  /** Polls a path until it answers `status`, within `timeoutMs`. */
  async waitFor(path: string, status = 200, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const exited = await Promise.race([this.#status, Promise.resolve(undefined)]);
      if (exited) {
        throw new AssertionError({ message: `server exited (${exited.code}):\n${this.logs()}` });
      }
      try {
        const response = await fetch(this.url + path);
        last = `${response.status} ${await response.text()}`;
        if (response.status === status) return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new AssertionError({
      message: `${path} never answered ${status} (last: ${last})\n${this.logs()}`,
    });
  }

  /** A dev token for `userId`. */
  async devToken(userId: string): Promise<string> {
    const response = await fetch(`${this.url}/auth/dev-token`, {
      method: "POST",
      body: JSON.stringify({ userId }),
    });
    if (response.status !== 200) {
      throw new AssertionError({ message: `dev-token ${response.status}` });
    }
    return ((await response.json()) as { token: string }).token;
  }

  /** The `/metrics` text. */
  async metrics(): Promise<string> {
    return await (await fetch(`${this.url}/metrics`)).text();
  }

  /** The sum of a metric's series whose labels include `match` (e.g. `code="1011"`). */
  async metric(name: string, match = ""): Promise<number> {
    let sum = 0;
    for (const line of (await this.metrics()).split("\n")) {
      if (!line.startsWith(name)) continue;
      const [series, value] = line.split(" ");
      if (series !== name && !series.startsWith(`${name}{`)) continue;
      if (match && !series.includes(match)) continue;
      sum += Number(value);
    }
    return sum;
  }

  /** Fails unless the detector counted no violation and no connection closed with 1011. */
  async assertNoRaces(): Promise<void> {
    const races = await this.metric("agentsocket_race_violations_total");
    const internal = await this.metric("agentsocket_connection_close_total", 'code="1011"');
    if (races !== 0 || internal !== 0) {
      throw new AssertionError({
        message: `race violations: ${races}, closes 1011: ${internal}\n${this.logs().slice(-4000)}`,
      });
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.#logs.push(decoder.decode(chunk, { stream: true }));
  }
}

/**
 * Starts a server process and waits until it answers.
 */
export async function startServer(options: StartServerOptions = {}): Promise<ServerProcess> {
  const port = options.port ?? freePort();
  const env = {
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: Deno.env.get("E2E_LOG_DIR") ? "info" : "warn",
    AGENT_STEP_DELAY_MS: "0",
    ...options.env,
  };
  const server = new ServerProcess(port, env);
  const waitFor = options.waitFor ?? "ready";
  try {
    if (waitFor === "ready") await server.waitFor("/health/ready");
    else if (waitFor === "live") await server.waitFor("/health/live");
  } catch (error) {
    await server.stop("SIGKILL");
    throw error;
  }
  return server;
}
