/**
 * The Docker Compose fallback: bring up `compose.yaml`'s services when a Docker engine runs,
 * and take down only what was brought up.
 *
 * Environment: `AGENTSOCKET_DOCKER` names the docker program (default `docker`; tests point it
 * at nothing to rule Docker out); `AGENTSOCKET_POSTGRES_PORT` / `AGENTSOCKET_REDIS_PORT` are
 * the ports compose.yaml publishes on 127.0.0.1 (default 5432 / 6379).
 *
 * @module
 */
import { findOnPath } from "./binaries.ts";
import { type CommandResult, runCommand } from "./process.ts";

/** A service of compose.yaml, named as there. */
export type ComposeService = "postgres" | "redis";

/** compose.yaml at the repository's root. */
export const COMPOSE_FILE = decodeURIComponent(
  new URL("../../compose.yaml", import.meta.url).pathname,
);

/** The docker program (`AGENTSOCKET_DOCKER`, default `docker`). */
export function dockerProgram(): string {
  return Deno.env.get("AGENTSOCKET_DOCKER") ?? "docker";
}

/** True when `docker info` reaches an engine (a client alone is not enough). */
export async function dockerEngineAvailable(): Promise<boolean> {
  const program = dockerProgram();
  if (!program) return false;
  const info = await runCommand(program, ["info", "--format", "{{.ServerVersion}}"], {
    timeoutMs: 15_000,
  });
  return info.code === 0;
}

/**
 * The published ports: `AGENTSOCKET_POSTGRES_PORT` / `AGENTSOCKET_REDIS_PORT`, as compose.yaml
 * reads them.
 *
 * @throws {RangeError} when one is not a port number.
 */
export function composePorts(): Record<ComposeService, number> {
  return {
    postgres: portFromEnv("AGENTSOCKET_POSTGRES_PORT", 5432),
    redis: portFromEnv("AGENTSOCKET_REDIS_PORT", 6379),
  };
}

/** The URL of a compose service on its published port. */
export function composeUrl(service: ComposeService, port: number): string {
  return service === "postgres"
    ? `postgres://postgres:postgres@127.0.0.1:${port}/postgres`
    : `redis://127.0.0.1:${port}`;
}

function portFromEnv(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`${name} must be a port number (1-65535), got "${raw}"`);
  }
  return port;
}

/** compose.yaml driven by `docker compose` (or the older `docker-compose`). */
export class ComposeProject {
  #cli: readonly string[];
  #file: string;

  private constructor(cli: readonly string[], file: string) {
    this.#cli = cli;
    this.#file = file;
  }

  /**
   * Finds a compose CLI.
   *
   * @returns The project, or `null` when neither `docker compose` nor `docker-compose` exists.
   */
  static async open(file = COMPOSE_FILE): Promise<ComposeProject | null> {
    const docker = dockerProgram();
    const plugin = await runCommand(docker, ["compose", "version"], { timeoutMs: 15_000 });
    if (plugin.code === 0) return new ComposeProject([docker, "compose"], file);
    const standalone = await findOnPath("docker-compose");
    return standalone ? new ComposeProject([standalone], file) : null;
  }

  /** Services of the project that run now. */
  async running(): Promise<ComposeService[]> {
    const ps = await this.#run(["ps", "--services", "--status", "running"], 60_000);
    if (ps.code !== 0) return [];
    return ps.stdout.split("\n").map((line) => line.trim())
      .filter((name): name is ComposeService => name === "postgres" || name === "redis");
  }

  /** `up -d --wait`: starts `services` and waits until their health checks pass. */
  up(services: readonly ComposeService[]): Promise<CommandResult> {
    return this.#run(["up", "-d", "--wait", "--wait-timeout", "180", ...services], 600_000);
  }

  /**
   * Takes down what this run brought up: the whole project (`down`) when that is all of it,
   * else only those services, leaving the others as they were.
   */
  async down(services: readonly ComposeService[], wholeProject: boolean): Promise<CommandResult> {
    return wholeProject
      ? await this.#run(["down", "--remove-orphans"], 120_000)
      : await this.#run(["rm", "--stop", "--force", ...services], 120_000);
  }

  #run(args: readonly string[], timeoutMs: number): Promise<CommandResult> {
    const [program, ...prefix] = this.#cli;
    return runCommand(program, [...prefix, "-f", this.#file, ...args], { timeoutMs });
  }
}
