import assert from "node:assert/strict";
import { ConnectionReadinessChecker } from "../../../src/connection/mod.ts";
import { manualClock } from "../../_helpers/manual_clock.ts";

/** A probe whose answer the test sets. */
function switchableProbe(initial: boolean) {
  const probe = { up: initial, calls: 0, run: () => Promise.resolve() };
  probe.run = () => {
    probe.calls++;
    return probe.up ? Promise.resolve() : Promise.reject(new Error("connection refused"));
  };
  return probe;
}

Deno.test("ConnectionReadinessChecker reports not_ready until the first probe succeeds", async () => {
  const clock = manualClock();
  const redis = switchableProbe(false);
  const checker = new ConnectionReadinessChecker({ clock, probes: { redis: redis.run } });
  assert.equal(checker.dependenciesReady(), false);
  await checker.start();
  assert.equal(checker.report().status, "not_ready");
  assert.equal(checker.report().checks.redis.status, "down");
  assert.match(checker.report().checks.redis.error ?? "", /refused/);
  redis.up = true;
  await checker.probeNow();
  assert.equal(checker.dependenciesReady(), true, "the first success needs no streak");
  assert.equal(checker.report().status, "ready");
  checker.stop();
});

Deno.test("ConnectionReadinessChecker uses hysteresis: 2 failures to go down, 2 successes to come back", async () => {
  const clock = manualClock();
  const pg = switchableProbe(true);
  const checker = new ConnectionReadinessChecker({ clock, probes: { postgres: pg.run } });
  await checker.start();
  assert.equal(checker.dependenciesReady(), true);
  pg.up = false;
  await checker.probeNow();
  assert.equal(checker.dependenciesReady(), true, "one failure is not an outage");
  await checker.probeNow();
  assert.equal(checker.dependenciesReady(), false);
  pg.up = true;
  await checker.probeNow();
  assert.equal(checker.dependenciesReady(), false, "one success is not a recovery");
  await checker.probeNow();
  assert.equal(checker.dependenciesReady(), true);
  checker.stop();
});

Deno.test("ConnectionReadinessChecker probes in the background on its interval, never per call", async () => {
  const clock = manualClock();
  const pg = switchableProbe(true);
  const checker = new ConnectionReadinessChecker({
    clock,
    probes: { postgres: pg.run },
    intervalMs: 1000,
  });
  await checker.start();
  assert.equal(pg.calls, 1);
  for (let i = 0; i < 100; i++) checker.dependenciesReady();
  checker.report();
  assert.equal(pg.calls, 1);
  clock.advance(1000);
  await waitFor(() => pg.calls === 2);
  checker.stop();
  clock.advance(5000);
  assert.equal(pg.calls, 2);
  assert.equal(clock.pending, 0);
});

Deno.test("ConnectionReadinessChecker fails a probe that hangs past its timeout", async () => {
  const clock = manualClock();
  const hanging = Promise.withResolvers<void>();
  const checker = new ConnectionReadinessChecker({
    clock,
    probes: { redis: () => hanging.promise },
    timeoutMs: 500,
  });
  const started = checker.start();
  clock.advance(500);
  await started;
  assert.equal(checker.report().checks.redis.status, "down");
  assert.match(checker.report().checks.redis.error ?? "", /timed out/);
  checker.stop();
  hanging.resolve();
});

Deno.test("ConnectionReadinessChecker.markDraining() reports draining", async () => {
  const checker = new ConnectionReadinessChecker({ clock: manualClock(), probes: {} });
  await checker.start();
  assert.equal(checker.report().status, "ready");
  checker.markDraining();
  assert.equal(checker.report().status, "draining");
  assert.equal(checker.draining(), true);
  checker.stop();
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await Promise.resolve();
  assert.ok(condition(), "condition not met");
}
