import assert from "node:assert/strict";
import type { NewEvent, PublishResult } from "../../../src/bus/mod.ts";
import { RunPublisher } from "../../../src/runs/run_publisher.ts";
import { EventStamper } from "../../../src/runs/run_events.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

/** An engine whose calls wait until the test answers them. */
function heldEngine() {
  const calls: { events: readonly NewEvent[]; answer: () => void }[] = [];
  let seq = 0;
  return {
    calls,
    engine: {
      publishMany(_userId: string, events: readonly NewEvent[]): Promise<PublishResult[]> {
        const done = Promise.withResolvers<PublishResult[]>();
        calls.push({
          events,
          answer: () =>
            done.resolve(events.map((event) => ({
              published: true,
              epoch: "e",
              event: { ...event, seq: ++seq },
            }))),
        });
        return done.promise;
      },
    },
  };
}

/** Lets the pump run (its promises and its yields) until `predicate` holds. */
async function until(predicate: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 100; turn++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  throw new Error(`Never happened: ${what}`);
}

function publisherOn(engine: ReturnType<typeof heldEngine>["engine"]) {
  const clock = new ManualClock();
  const run = { id: "r1", userId: "alice", threadId: "t1" };
  return new RunPublisher(run, { engine, clock, stamper: new EventStamper(clock) });
}

Deno.test("RunPublisher sends what queued while a call was out in one publishMany, 128 at most", async () => {
  const { calls, engine } = heldEngine();
  const publisher = publisherOn(engine);
  for (let i = 0; i < 300; i++) publisher.emit({ name: "agent_thinking", data: { text: `${i}` } });
  assert.deepEqual(calls.map((c) => c.events.length), [1], "the first goes at once");
  calls[0].answer();
  await until(() => calls.length === 2, "a second call");
  assert.equal(calls[1].events.length, 128);
  calls[1].answer();
  await until(() => calls.length === 3, "a third call");
  calls[2].answer();
  await until(() => calls.length === 4, "a fourth call");
  calls[3].answer();
  await publisher.settle();
  assert.deepEqual(calls.map((c) => c.events.length), [1, 128, 128, 43]);
  const sent = calls.flatMap((c) => c.events.map((e) => Number(e.data.text)));
  assert.deepEqual(sent, Array.from({ length: 300 }, (_, i) => i), "in order, each once");
});

Deno.test("RunPublisher.whenRoom() holds the agent while two batches wait, until a call returns", async () => {
  const { calls, engine } = heldEngine();
  const publisher = publisherOn(engine);
  let queued = 0;
  while (!publisher.full) publisher.emit({ name: "agent_thinking", data: { text: `${queued++}` } });
  assert.equal(queued, 256, "full at 256 not yet published (the one out included)");
  let roomy = false;
  const room = publisher.whenRoom().then(() => roomy = true);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(roomy, false, "held while the call is out");
  calls[0].answer();
  await room;
  assert.equal(publisher.full, false);
  for (let k = 1; k < 3; k++) {
    await until(() => calls.length === k + 1, `call ${k + 1}`);
    calls[k].answer();
  }
  await publisher.settle();
  assert.deepEqual(calls.map((c) => c.events.length), [1, 128, 127]);
});
