import assert from "node:assert/strict";
import { StreamCursor } from "../../../src/client/stream_cursor.ts";
import { readyFrame } from "./_fakes.ts";

Deno.test("StreamCursor.resumePosition() is undefined before the first ready, then names epoch and last seq", () => {
  const cursor = new StreamCursor();
  assert.equal(cursor.resumePosition(), undefined);
  cursor.ready(readyFrame({ epoch: "e1", seq: 7 }));
  assert.deepEqual(cursor.resumePosition(), { epoch: "e1", after: 7 });
  assert.equal(cursor.accept({ seq: 8 }), true);
  assert.deepEqual(cursor.resumePosition(), { epoch: "e1", after: 8 });
});

Deno.test("StreamCursor.accept() delivers each seq once, whatever arrives again", () => {
  const cursor = new StreamCursor();
  cursor.ready(readyFrame({ seq: 0 }));
  assert.deepEqual([1, 2, 2, 1, 3].map((seq) => cursor.accept({ seq })), [
    true,
    true,
    false,
    false,
    true,
  ]);
  // A resumed connection replays from `after`: what was delivered is not delivered again.
  const ready = cursor.ready(readyFrame({ seq: 5, resumed: true }));
  assert.deepEqual(ready, { awaitReplayEnd: false });
  assert.deepEqual([3, 4, 5].map((seq) => cursor.accept({ seq })), [false, true, true]);
  assert.equal(cursor.lastSeq, 5);
});

Deno.test("StreamCursor.ready() awaits the replay's end when active runs replay, and a pong ends it below ready.seq", () => {
  const cursor = new StreamCursor();
  cursor.ready(readyFrame({ seq: 2 }));
  const ready = cursor.ready(
    readyFrame({ seq: 10, activeRuns: [{ runId: "r", threadId: "t", startSeq: 4 }] }),
  );
  assert.deepEqual(ready, {
    awaitReplayEnd: true,
    reset: { previousEpoch: "e1", epochChanged: false },
  });
  assert.equal(cursor.replaying, true);
  // The active run's events replay: 4 and 6 are the run's; 7-10 belong to runs that ended.
  assert.equal(cursor.accept({ seq: 4 }), true);
  assert.equal(cursor.accept({ seq: 6 }), true);
  assert.equal(cursor.lastSeq, 6);
  cursor.pong(); // the server answered the ping after its last replayed event
  assert.equal(cursor.replaying, false);
  assert.equal(cursor.lastSeq, 10, "the position moves past the events not replayed");
  assert.equal(cursor.accept({ seq: 9 }), false);
  assert.equal(cursor.accept({ seq: 11 }), true);
});

Deno.test("StreamCursor.accept() ends the replay at a live event past ready.seq", () => {
  const cursor = new StreamCursor();
  cursor.ready(readyFrame({ seq: 10, activeRuns: [{ runId: "r", threadId: "t", startSeq: 3 }] }));
  assert.equal(cursor.accept({ seq: 3 }), true);
  assert.equal(cursor.accept({ seq: 11 }), true);
  assert.equal(cursor.replaying, false);
  assert.equal(cursor.lastSeq, 11);
});

Deno.test("StreamCursor.ready() starts over when the epoch changes or the log was rewound", async (t) => {
  await t.step("a new epoch", () => {
    const cursor = new StreamCursor();
    cursor.ready(readyFrame({ epoch: "e1", seq: 50 }));
    const ready = cursor.ready(
      readyFrame({ epoch: "e2", seq: 3, activeRuns: [{ runId: "r", threadId: "t", startSeq: 1 }] }),
    );
    assert.deepEqual(ready.reset, { previousEpoch: "e1", epochChanged: true });
    assert.equal(cursor.epoch, "e2");
    assert.equal(cursor.accept({ seq: 1 }), true, "seqs of the new log compare from 0");
  });
  await t.step("the same epoch, rewound below what the client holds", () => {
    const cursor = new StreamCursor();
    cursor.ready(readyFrame({ seq: 50 }));
    cursor.ready(readyFrame({ seq: 3 }));
    assert.equal(cursor.lastSeq, 3);
  });
  await t.step("without active runs the position is ready.seq at once", () => {
    const cursor = new StreamCursor();
    const ready = cursor.ready(readyFrame({ seq: 9 }));
    assert.deepEqual(ready, { awaitReplayEnd: false, reset: undefined });
    assert.equal(cursor.lastSeq, 9);
  });
});
