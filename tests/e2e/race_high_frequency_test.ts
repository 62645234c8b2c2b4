/**
 * Race suite 10 — high-frequency delivery: a run emits more than 10,000 events as fast as the
 * server can publish them, to a user with three reading connections and one that stopped
 * reading. Every reading connection gets every event, in order. The one that stopped reading is
 * held by flow control (bounded memory) and then closed 1013 so that it resumes; the others
 * never notice it.
 */
import assert from "node:assert/strict";
import type { EventFrame } from "../../src/protocol/mod.ts";
import { assertSeqs, seqRange } from "../_helpers/race_observed.ts";
import { raceTest, signToken } from "../_helpers/race_suite.ts";
import { openNonReadingClient } from "../_helpers/raw_upgrade.ts";
import { TestClient } from "../_helpers/test_client.ts";

const THINKING_STEPS = 30_000; // ≈ 7 MB of frames: more than the kernel buffers for one socket

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

raceTest(
  "race suite 10: over 10,000 events to every connection, in order; a stalled reader is cut",
  async ({ start }) => {
    const server = await start({
      env: {
        AGENT_STEP_DELAY_MS: "0",
        AGENT_THINKING_STEPS: String(THINKING_STEPS),
        EVENT_RETENTION_COUNT: "50000",
        SLOW_CONSUMER_BYTES: "65536",
        SLOW_CONSUMER_TIMEOUT_MS: "2000",
        RATE_LIMIT_BURST: "1000",
      },
    });
    const token = await signToken("firehose");
    const readers = [0, 1, 2].map(() => TestClient.open(server.wsUrl));
    await Promise.all(readers.map((c) => c.hello(token)));
    const stalled = await openNonReadingClient(server.port, token);
    const rssBefore = rssKiB(server.pid);

    readers[0].send({ type: "chat", id: "firehose-1", text: "go" });
    const streams: EventFrame[][] = await Promise.all(
      readers.map((c) => c.eventsUntil((e) => e.name === "agent_completed", 120_000)),
    );
    const expected = THINKING_STEPS + 4;
    for (const events of streams) {
      assertSeqs(events, seqRange(1, expected), "a reader");
    }
    assert.deepEqual(streams[0].map((e) => e.name), streams[2].map((e) => e.name));

    // The stalled reader is closed 1013 by flow control, not left to grow the server's memory.
    const deadline = Date.now() + 15_000;
    const closes1013 = () =>
      server.metric("agentsocket_connection_close_total", 'code="1013"', { absent: 0 });
    while (await closes1013() < 1) {
      assert.ok(Date.now() < deadline, "the stalled reader was never closed");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    stalled.close();
    const grownMiB = (rssKiB(server.pid) - rssBefore) / 1024;
    assert.ok(grownMiB < 256, `the server grew by ${grownMiB.toFixed(0)} MiB`);
    await Promise.all(readers.map((c) => c.close()));
  },
);
