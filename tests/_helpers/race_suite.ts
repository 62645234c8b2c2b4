/**
 * Shared parts of the race-condition suite (tests/e2e/race_*_test.ts): a server process on
 * real PostgreSQL and Redis with its own database and key prefix, locally signed tokens, and
 * the "remove the guard, expect the scenario to fail on the race it prevents" runner.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import { SignJWT } from "jose";
import type { UnsafeGuardName } from "../../src/config/mod.ts";
import { RaceObserved } from "./race_observed.ts";
import type { ObservedRaceKind } from "./race_observed.ts";
import { createServiceEnv, TEST_JWT_SECRET } from "./services.ts";
import type { ServiceEnv } from "./services.ts";
import { startServer } from "./start_server.ts";
import { startThrowawayPostgres, startThrowawayRedis } from "./throwaway_services.ts";
import type { ThrowawayPostgres, ThrowawayRedis } from "./throwaway_services.ts";
import type { ServerProcess, StartServerOptions } from "./start_server.ts";

const SECRET = new TextEncoder().encode(TEST_JWT_SECRET);

/** Signs an HS256 token for `userId` with the suite's shared secret. */
export function signToken(userId: string, ttlSeconds = 3600): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(userId)
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(SECRET);
}

/** What a scenario is given. */
export interface ScenarioContext {
  readonly services: ServiceEnv;
  /** Starts a server on the scenario's database and prefix (extra env merged in). */
  start(options?: StartServerOptions): Promise<ServerProcess>;
}

/** A scenario, parameterised by the guards switched off (none: the real server). */
export type Scenario = (
  context: ScenarioContext,
  guardsOff: readonly UnsafeGuardName[],
) => Promise<void>;

/**
 * Runs a scenario against its own database and key prefix. Afterwards every server it started
 * is checked, up to now or up to its exit: zero race violations (a counted one throws
 * {@link RaceObserved} naming its kind) and no close 1011. A server that exited without being
 * stopped fails the run, and so does one stopped before any `/metrics` read. Every server is
 * then killed.
 *
 * @param scenario The scenario.
 * @param guardsOff The guards to switch off (`TEST_UNSAFE_GUARDS_OFF`) in every server.
 */
export async function runScenario(
  scenario: Scenario,
  guardsOff: readonly UnsafeGuardName[] = [],
): Promise<void> {
  await using services = await createServiceEnv();
  const servers: ServerProcess[] = [];
  const context: ScenarioContext = {
    services,
    async start(options = {}) {
      const env: Record<string, string> = { ...services.env, ...options.env };
      if (guardsOff.length > 0) env.TEST_UNSAFE_GUARDS_OFF = guardsOff.join(",");
      const server = await startServer({ ...options, env });
      servers.push(server);
      return server;
    },
  };
  try {
    try {
      await scenario(context, guardsOff);
    } catch (error) {
      const crashed = servers.filter((server) => server.exitedUnexpectedly);
      if (crashed.length === 0 || error instanceof RaceObserved) throw error;
      throw new AssertionError({
        message: `a server exited unexpectedly (port ${crashed[0].port}), and then: ${
          error instanceof Error ? error.message : String(error)
        }\n${crashed[0].logs().slice(-4000)}`,
      });
    }
    for (const server of servers) await server.assertNoRaces();
  } finally {
    await Promise.all(servers.map((server) => server.stop("SIGKILL")));
  }
}

/**
 * Runs `scenario` with `guards` switched off and requires it to fail on `race`, the race those
 * guards prevent: a {@link RaceObserved} of that kind. Passing, failing on another race, or
 * failing on anything else (a server that did not boot, a client that timed out) fails the
 * proof.
 *
 * @returns The race observed, for a caller that checks more of it.
 */
export async function expectFailureWithout(
  guards: readonly UnsafeGuardName[],
  race: ObservedRaceKind,
  scenario: Scenario,
): Promise<RaceObserved> {
  const off = guards.join(", ");
  try {
    await runScenario(scenario, guards);
  } catch (error) {
    if (error instanceof RaceObserved && error.kind === race) return error;
    const what = error instanceof RaceObserved
      ? `on another race, ${error.kind}`
      : `for another reason than a race`;
    throw new AssertionError({
      message: `with ${off} switched off the scenario must fail on ${race}; it failed ${what}: ${
        error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      }`,
    });
  }
  throw new AssertionError({
    message: `the scenario passed with ${off} switched off: it does not test them`,
  });
}

/** Guards whose removal a scenario proves, and the race it must then fail on. */
export interface GuardProof {
  readonly guards: readonly UnsafeGuardName[];
  readonly race: ObservedRaceKind;
}

/** Options of {@link raceTest}. */
export interface RaceTestOptions {
  /** Each run with guards switched off, and the race it must fail on. */
  readonly proves?: readonly GuardProof[];
}

/**
 * Registers a scenario as one test: with every guard on, then once per proof with its guards
 * switched off, failing on its race.
 */
export function raceTest(name: string, scenario: Scenario, options: RaceTestOptions = {}): void {
  Deno.test(name, async (t) => {
    await t.step("holds with every guard on", () => runScenario(scenario));
    for (const { guards, race } of options.proves ?? []) {
      await t.step(
        `fails on ${race} with ${guards.join(", ")} switched off (the naive server)`,
        async () => {
          await expectFailureWithout(guards, race, scenario);
        },
      );
    }
  });
}

/** A throwaway PostgreSQL and Redis of one fault test, and the server environment using them. */
export interface ThrowawayServices extends AsyncDisposable {
  readonly pg: ThrowawayPostgres;
  readonly redis: ThrowawayRedis;
  readonly env: Record<string, string>;
}

/**
 * Starts a throwaway PostgreSQL and Redis (never the machine's shared ones, which other tests
 * use) for a fault test; both are stopped and removed on dispose.
 */
export async function startThrowawayServices(): Promise<ThrowawayServices> {
  const [pg, redis] = await Promise.all([startThrowawayPostgres(), startThrowawayRedis()]);
  return {
    pg,
    redis,
    env: { DATABASE_URL: pg.url, REDIS_URL: redis.url, JWT_SECRET: TEST_JWT_SECRET },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled([pg[Symbol.asyncDispose](), redis[Symbol.asyncDispose]()]);
    },
  };
}
