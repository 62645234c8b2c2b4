/**
 * The race suite's own checks, shown able to fail: `/metrics` counts a race by kind when a
 * guard is switched off, and `assertNoRaces` names it; a missing metric is an error, not a
 * zero; a server that died fails the check while one that was stopped is checked up to its
 * exit; and a naive run proves its guard only by failing on the race that guard prevents.
 */
import assert from "node:assert/strict";
import { RaceObserved } from "../_helpers/race_observed.ts";
import { expectFailureWithout, runScenario } from "../_helpers/race_suite.ts";
import type { Scenario } from "../_helpers/race_suite.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

/**
 * A ping sent right behind hello, while token verification is stretched (see {@link NAIVE}):
 * with the pre-ready queue off it is answered before ready.
 */
async function pingBeforeReady(server: ServerProcess, userId: string): Promise<void> {
  const client = TestClient.open(server.wsUrl);
  await client.opened;
  client.send({ type: "hello", token: await server.devToken(userId) });
  client.send({ type: "ping" });
  await client.nextReady();
  await client.sync();
  await client.close();
}

/** A server without the pre-ready queue, its handshake long enough for a ping to overtake it. */
const NAIVE = { TEST_UNSAFE_GUARDS_OFF: "queue_before_ready", TEST_DELAY_VERIFY_MS: "200" };

const pingScenario: Scenario = async ({ start }) => {
  await pingBeforeReady(await start({ env: { TEST_DELAY_VERIFY_MS: "200" } }), "pinger");
};

function isRace(kind: string, evidence?: string): (error: unknown) => boolean {
  return (error) =>
    error instanceof RaceObserved && error.kind === kind &&
    (evidence === undefined || error.evidence === evidence);
}

Deno.test("ServerProcess.assertNoRaces() names the kind /metrics counted when a guard is off", async () => {
  await using server = await startServer({ env: NAIVE });
  await pingBeforeReady(server, "pinger");
  const counted = await server.metric(
    "agentsocket_race_violations_total",
    'kind="frame_before_ready"',
  );
  assert.ok(counted >= 1, `frame_before_ready counted ${counted} times`);
  assert.equal((await server.raceViolations()).get("frame_before_ready"), counted);
  await assert.rejects(server.assertNoRaces(), isRace("frame_before_ready", "metrics"));
});

Deno.test("ServerProcess.metric() throws when the series is missing, rather than reading 0", async () => {
  await using server = await startServer();
  await assert.rejects(server.metric("agentsocket_no_such_total"), /no series/);
  await assert.rejects(
    server.metric("agentsocket_race_violations_total", 'kind="no_such_kind"'),
    /no series/,
  );
  assert.equal(
    await server.metric("agentsocket_connection_close_total", 'code="4999"', { absent: 0 }),
    0,
  );
  assert.equal(
    await server.metric("agentsocket_race_violations_total", 'kind="send_not_open"'),
    0,
  );
});

Deno.test("ServerProcess.assertNoRaces() fails for a server that exited unexpectedly", async () => {
  await using server = await startServer();
  await server.assertNoRaces();
  Deno.kill(server.pid, "SIGKILL"); // not through stop(): nobody meant it to exit
  await server.status;
  assert.ok(server.exitedUnexpectedly);
  await assert.rejects(server.assertNoRaces(), /exited unexpectedly/);
});

Deno.test("runScenario() fails when a server exits unexpectedly, though the scenario passed", async () => {
  await assert.rejects(
    runScenario(async ({ start }) => {
      const server = await start();
      Deno.kill(server.pid, "SIGKILL");
      await server.status;
    }),
    /exited unexpectedly/,
  );
});

Deno.test("ServerProcess.assertNoRaces() checks a stopped server up to its exit", async (t) => {
  await t.step("a clean one passes, from its last /metrics read", async () => {
    const server = await startServer();
    assert.equal((await server.stop("SIGTERM")).code, 0);
    assert.equal(server.exitedUnexpectedly, false);
    await server.assertNoRaces();
  });
  await t.step("one that counted a race fails with it, after it exited", async () => {
    const server = await startServer({ env: NAIVE });
    await pingBeforeReady(server, "pinger");
    assert.equal((await server.stop("SIGTERM")).code, 0);
    await assert.rejects(server.assertNoRaces(), isRace("frame_before_ready"));
  });
  await t.step("one killed outright is judged by the read just before the kill", async () => {
    const server = await startServer({ env: NAIVE });
    await pingBeforeReady(server, "pinger");
    await server.stop("SIGKILL");
    await assert.rejects(server.assertNoRaces(), isRace("frame_before_ready", "metrics"));
  });
});

Deno.test("expectFailureWithout() accepts only a failure on the race the guard prevents", async (t) => {
  await t.step("the race itself: accepted", async () => {
    const race = await expectFailureWithout(
      ["queue_before_ready"],
      "frame_before_ready",
      pingScenario,
    );
    assert.equal(race.evidence, "metrics");
  });
  await t.step("another race: the proof fails", async () => {
    await assert.rejects(
      expectFailureWithout(["queue_before_ready"], "duplicate_seq", pingScenario),
      /must fail on duplicate_seq; it failed on another race, frame_before_ready/,
    );
  });
  await t.step("a server that did not boot: the proof fails", async () => {
    await assert.rejects(
      expectFailureWithout(["queue_before_ready"], "frame_before_ready", async ({ start }) => {
        await start({ env: { JWT_SECRET: "too short" } });
      }),
      /for another reason than a race: AssertionError: server exited/,
    );
  });
  await t.step("a client that timed out: the proof fails", async () => {
    await assert.rejects(
      expectFailureWithout(["queue_before_ready"], "frame_before_ready", async ({ start }) => {
        const server = await start();
        const client = TestClient.open(server.wsUrl);
        await client.opened;
        try {
          await client.next(200); // nothing comes before hello
        } finally {
          await client.close();
        }
      }),
      /for another reason than a race: AssertionError: timed out waiting for a frame/,
    );
  });
  await t.step("a scenario that passes: the proof fails", async () => {
    await assert.rejects(
      expectFailureWithout(["dedupe_by_seq"], "duplicate_seq", async () => {}),
      /passed with dedupe_by_seq switched off: it does not test them/,
    );
  });
});
