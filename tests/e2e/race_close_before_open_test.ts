/**
 * Race suite 12 — a connection refused at once: an upgrade that arrives while the server is at
 * its connection ceiling is accepted, then closed 1013, so that the client (a browser too) sees
 * the code and backs off. The close waits for the socket to open. A server that closes the
 * socket before it opened loses the code; the detector refuses that close and counts
 * `send_not_open`, which is what the naive run must fail on.
 */
import assert from "node:assert/strict";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { TestClient } from "../_helpers/test_client.ts";

raceTest(
  "race suite 12: an upgrade refused at once is closed after it opened, with its code",
  async ({ start }) => {
    const server = await start({ env: { MAX_CONNECTIONS: "1" } });
    const holder = TestClient.open(server.wsUrl);
    await holder.hello(await signToken("first-come"));
    const late = TestClient.open(server.wsUrl);
    // A close before open is refused and counted by the server, and the client may then never
    // see a close at all: wait for it only as long as no race is counted.
    const closed = await server.unlessRace(late.waitClosed());
    assert.deepEqual([closed.code, closed.reason], [1013, "Server at capacity"]);
    await holder.close();
  },
  { proves: [{ guards: ["wait_for_open"], race: "send_not_open" }] },
);
