import assert from "node:assert/strict";
import { EventCursor } from "../../../src/connection/mod.ts";
import type { UserEvent } from "../../../src/bus/mod.ts";

function event(seq: number): UserEvent {
  return { seq, threadId: "t", runId: "r", name: "agent_delta", data: {}, ts: "" };
}

const seqs = (events: readonly UserEvent[]) => events.map((e) => e.seq);

Deno.test("EventCursor.begin() returns the catch-up events up to its head and stands at the head", () => {
  const cursor = new EventCursor();
  // A fresh connection's catch-up: the active run's events only (5, 7), head 8.
  const sent = cursor.begin({ epoch: "e1", seq: 8, events: [event(5), event(7), event(9)] });
  assert.deepEqual(seqs(sent), [5, 7], "nothing past the head it was read at");
  assert.equal(cursor.seq, 8);
  assert.equal(cursor.epoch, "e1");
});

Deno.test("EventCursor.classify() drops what was delivered and names a gap and a reset", () => {
  const cursor = new EventCursor();
  cursor.begin({ epoch: "e1", seq: 3, events: [] });
  assert.equal(cursor.classify(event(2), "e1"), "duplicate");
  assert.equal(cursor.classify(event(3), "e1"), "duplicate");
  assert.equal(cursor.classify(event(4), "e1"), "deliver");
  assert.equal(cursor.classify(event(6), "e1"), "gap");
  assert.equal(cursor.classify(event(4), "e2"), "reset", "another epoch wins over the seq");
  cursor.delivered(4);
  assert.equal(cursor.classify(event(4), "e1"), "duplicate");
  assert.equal(cursor.classify(event(5), "e1"), "deliver");
});

Deno.test("EventCursor.applyRange() sends past the cursor and moves to the head across holes", () => {
  const cursor = new EventCursor();
  cursor.begin({ epoch: "e1", seq: 3, events: [] });
  // 5 and 6 were a deleted thread's: filtered from the read, the head is still 8.
  const outcome = cursor.applyRange({
    epoch: "e1",
    seq: 8,
    complete: true,
    events: [event(3), event(4), event(7), event(8)],
  });
  assert.deepEqual(outcome.ok && seqs(outcome.events), [4, 7, 8]);
  assert.equal(cursor.seq, 8);
  assert.equal(cursor.classify(event(9), "e1"), "deliver", "live delivery goes on after the head");
});

Deno.test("EventCursor.applyRange() skips a hole at the head, so live events after it flow", () => {
  const cursor = new EventCursor();
  cursor.begin({ epoch: "e1", seq: 2, events: [] });
  const outcome = cursor.applyRange({ epoch: "e1", seq: 5, complete: true, events: [event(3)] });
  assert.deepEqual(outcome.ok && seqs(outcome.events), [3]);
  assert.equal(cursor.classify(event(4), "e1"), "duplicate", "a purged event never goes out");
  assert.equal(cursor.classify(event(6), "e1"), "deliver");
});

Deno.test("EventCursor.applyRange() refuses an incomplete range or another epoch, and stays put", () => {
  const cursor = new EventCursor();
  cursor.begin({ epoch: "e1", seq: 3, events: [] });
  assert.deepEqual(
    cursor.applyRange({ epoch: "e1", seq: 9, complete: false, events: [event(6)] }),
    { ok: false, reason: "incomplete" },
  );
  assert.deepEqual(
    cursor.applyRange({ epoch: "e2", seq: 9, complete: true, events: [event(4)] }),
    { ok: false, reason: "reset" },
  );
  assert.equal(cursor.seq, 3);
});

Deno.test("EventCursor.delivered() never moves the cursor back", () => {
  const cursor = new EventCursor();
  cursor.begin({ epoch: "e1", seq: 5, events: [] });
  cursor.delivered(2);
  assert.equal(cursor.seq, 5);
});
