/**
 * Race suite 6 — service start-up order: the server starts before PostgreSQL and Redis (its
 * own throwaway ones). Meanwhile `/health/ready` is 503 and handshakes are accepted, then closed
 * with 1013 — never 1011. Once the services start, everything works, with no restart.
 */
import assert from "node:assert/strict";
import { signToken, startThrowawayServices } from "../_helpers/race_suite.ts";
import { startServer } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

Deno.test("race suite 6: the server starts before PostgreSQL and Redis, and recovers on its own", async () => {
  await using services = await startThrowawayServices();
  await Promise.all([services.pg.stop(), services.redis.stop()]);
  await using server = await startServer({ env: services.env, waitFor: "live" });

  const ready = await fetch(`${server.url}/health/ready`);
  assert.equal(ready.status, 503);
  const report = await ready.json();
  assert.equal(report.status, "not_ready");
  assert.deepEqual([report.checks.postgres.status, report.checks.redis.status], ["down", "down"]);

  const token = await signToken("early-bird");
  const early = TestClient.open(server.wsUrl);
  await early.opened; // accepted, so that a browser sees the code
  early.send({ type: "hello", token });
  assert.equal((await early.waitClosed()).code, 1013);

  await Promise.all([services.pg.start(), services.redis.restart()]);
  await server.waitFor("/health/ready", 200, 30_000);

  const client = TestClient.open(server.wsUrl);
  await client.hello(token);
  client.send({ type: "chat", id: "late-1", text: "what is 6*7" });
  await client.nextOf("ack");
  const events = await client.eventsUntil((e) => e.name === "agent_completed");
  assert.match(String(events.at(-1)!.data.text), /42/);
  await client.close();
  await server.assertNoRaces();
});
