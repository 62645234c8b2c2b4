import assert from "node:assert/strict";
import { TrackedRun } from "../../../src/client/chat_run.ts";
import { ChatRefusedError, RunFailedError } from "../../../src/client/mod.ts";
import type { EventFrame } from "../../../src/protocol/mod.ts";

function event(seq: number, name: string, data: Record<string, unknown> = {}): EventFrame {
  return { type: "event", seq, threadId: "t1", runId: "r1", name, data, ts: "" };
}

function localRun(): TrackedRun {
  return new TrackedRun({ local: true, chatId: "c1", text: "hi" }, () => {});
}

Deno.test("TrackedRun iterates every event from the first, for any iterator, and ends after the terminal one", async () => {
  const run = localRun();
  const early = (async () => {
    const names = [];
    for await (const e of run) names.push(e.name);
    return names;
  })();
  run.push(event(1, "agent_started", { chatId: "c1", text: "hi" }));
  assert.equal(run.state, "running");
  assert.equal(run.runId, "r1");
  assert.equal((await run.accepted).runId, "r1");
  run.push(event(2, "agent_thinking"));
  run.push(event(3, "agent_completed", { text: "hello" }));
  const late = [];
  for await (const e of run) late.push(e.seq);
  assert.deepEqual(await early, ["agent_started", "agent_thinking", "agent_completed"]);
  assert.deepEqual(late, [1, 2, 3]);
  assert.equal(await run.reply, "hello");
  assert.deepEqual(await run.settled, { state: "completed", reply: "hello" });
});

Deno.test("TrackedRun.reply rejects with RunFailedError on agent_failed, with its code", async () => {
  const run = localRun();
  run.push(event(1, "agent_started"));
  run.push(event(2, "agent_failed", { error: { code: "shutdown", message: "Server stopped" } }));
  await assert.rejects(() => run.reply, (error: RunFailedError) => {
    assert.ok(error instanceof RunFailedError);
    assert.deepEqual([error.status, error.code, error.message], [
      "failed",
      "shutdown",
      "Server stopped",
    ]);
    return true;
  });
  run.complete("too late"); // settling twice changes nothing
  assert.equal(run.state, "failed");
});

Deno.test("TrackedRun refused: accepted, reply and iteration all reject with ChatRefusedError", async () => {
  const run = localRun();
  run.refuse(new ChatRefusedError("thread_busy", "A run is already in flight"));
  await assert.rejects(() => run.accepted, ChatRefusedError);
  await assert.rejects(() => run.reply, /thread_busy/);
  await assert.rejects(async () => {
    for await (const _ of run) { /* nothing arrives */ }
  }, ChatRefusedError);
  assert.equal((await run.settled).state, "refused");
});

Deno.test("TrackedRun.cancel() asks once, and not after the run settled", () => {
  let asked = 0;
  const run = new TrackedRun({ local: true, chatId: "c1", text: "hi" }, () => asked++);
  run.cancel();
  run.cancel();
  run.complete("done");
  run.cancel();
  assert.equal(asked, 1);
});
