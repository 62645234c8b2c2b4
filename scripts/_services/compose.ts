/**
 * The Docker Compose fallback: bring up the `test` profile of `compose.yaml` (`postgres-test`,
 * `redis-test`: data in tmpfs, durability off) when a Docker engine runs, and take down only
 * what was brought up. They run as a compose project of their own, `agentsocket-test`, so
 * neither `ps` nor `down` ever touches the development services (`postgres`, `redis`, whose
 * data lives in named volumes) of the default project.
 *
 * Environment: `AGENTSOCKET_DOCKER` names the docker program (default `docker`; tests point it
 * at nothing to rule Docker out); `AGENTSOCKET_POSTGRES_PORT` / `AGENTSOCKET_REDIS_PORT` are
 * the ports compose.yaml publishes on 127.0.0.1 (default 5432 / 6379).
 *
 * @module
 */
import { findOnPath } from "./binaries.ts";
import { type CommandResult, runCommand } from "./process.ts";

/** A service the tests need; compose.yaml names its test-profile flavour {@link TEST_SERVICES}. */
export type ComposeService = "postgres" | "redis";

/** The compose.yaml services (all in the `test` profile) that stand for each {@link ComposeService}. */
export const TEST_SERVICES: Readonly<Record<ComposeService, string>> = {
  postgres: "postgres-test",
  redis: "redis-test",
};

/** The compose.yaml profile of the test services. */
export const TEST_PROFILE = "test";

/** The compose project the test services run in, apart from the development one. */
export const TEST_PROJECT = "agentsocket-test";

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

/**
 * The `test` profile of compose.yaml, as the project {@link TEST_PROJECT}, driven by
 * `docker compose` (or the older `docker-compose`).
 */
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

  /** Test services of the project that run now. */
  async running(): Promise<ComposeService[]> {
    const ps = await this.#run(["ps", "--services", "--status", "running"], 60_000);
    if (ps.code !== 0) return [];
    const names = new Set(ps.stdout.split("\n").map((line) => line.trim()));
    return SERVICES.filter((service) => names.has(TEST_SERVICES[service]));
  }

  /** `up -d --wait`: starts the test flavour of `services` and waits until they are healthy. */
  up(services: readonly ComposeService[]): Promise<CommandResult> {
    return this.#run(
      ["up", "-d", "--wait", "--wait-timeout", "180", ...composeNames(services)],
      600_000,
    );
  }

  /**
   * Takes down what this run brought up: the whole test project (`down`, its network
   * included) when that is all of it, else only those services, leaving the others as they
   * were. The development services are in another project and never touched.
   */
  async down(services: readonly ComposeService[], wholeProject: boolean): Promise<CommandResult> {
    return wholeProject
      ? await this.#run(["down", "--remove-orphans"], 120_000)
      : await this.#run(["rm", "--stop", "--force", ...composeNames(services)], 120_000);
  }

  #run(args: readonly string[], timeoutMs: number): Promise<CommandResult> {
    const [program, ...prefix] = this.#cli;
    const project = ["-f", this.#file, "-p", TEST_PROJECT, "--profile", TEST_PROFILE];
    return runCommand(program, [...prefix, ...project, ...args], { timeoutMs });
  }
}

const SERVICES = ["postgres", "redis"] as const satisfies readonly ComposeService[];

function composeNames(services: readonly ComposeService[]): string[] {
  return services.map((service) => TEST_SERVICES[service]);
}
