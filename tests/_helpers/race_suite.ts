/**
 * Shared parts of the race-condition suite (tests/e2e/race_*_test.ts): a server process on
 * real PostgreSQL and Redis with its own database and key prefix, locally signed tokens, and
 * the "remove the guard, expect the scenario to fail" runner.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import { SignJWT } from "jose";
import type { UnsafeGuardName } from "../../src/config/mod.ts";
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
 * Runs a scenario against its own database and key prefix. Every server it started is stopped
 * (SIGKILL if still running) and checked: zero race violations and no close 1011 — unless
 * guards were switched off, where the detector is expected to count.
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
    await scenario(context, guardsOff);
    if (guardsOff.length === 0) {
      for (const server of servers) {
        const exited = await Promise.race([server.status, Promise.resolve(undefined)]);
        if (!exited) await server.assertNoRaces();
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop("SIGKILL")));
  }
}

/**
 * Runs `scenario` with `guards` switched off and requires it to fail with an assertion: the
 * proof that the scenario tests those guards.
 */
export async function expectFailureWithout(
  guards: readonly UnsafeGuardName[],
  scenario: Scenario,
): Promise<void> {
  try {
    await runScenario(scenario, guards);
  } catch (error) {
    if (error instanceof AssertionError) return;
    throw error;
  }
  throw new AssertionError({
    message: `the scenario passed with ${guards.join(", ")} switched off: it does not test them`,
  });
}

/** Registers a scenario as one test: with every guard on, then with `guards` off. */
export function raceTest(
  name: string,
  scenario: Scenario,
  guards?: readonly UnsafeGuardName[],
): void {
  Deno.test(name, async (t) => {
    await t.step("holds with every guard on", () => runScenario(scenario));
    if (guards) {
      await t.step(
        `fails with ${guards.join(", ")} switched off (the naive server)`,
        () => expectFailureWithout(guards, scenario),
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
