import assert from "node:assert/strict";
import { TrackedRun } from "../../../src/client/chat_run.ts";
import type { ApprovalDecision, RunController } from "../../../src/client/chat_run.ts";
import {
  ApprovalRefusedError,
  ChatRefusedError,
  RunFailedError,
  RunLostError,
} from "../../../src/client/mod.ts";
import { eventFrame } from "./_fakes.ts";

class Controller implements RunController {
  cancels = 0;
  approvals: ApprovalDecision[] = [];
  cancel(): void {
    this.cancels++;
  }
  approve(_run: TrackedRun, decision: ApprovalDecision): void {
    this.approvals.push(decision);
  }
}

function localRun(controller = new Controller()): TrackedRun {
  return new TrackedRun({ local: true, chatId: "c1", userText: "hi" }, controller);
}

Deno.test("TrackedRun iterates every event from the first, for any iterator, and ends after the terminal one", async () => {
  const run = localRun();
  const early = (async () => {
    const names = [];
    for await (const e of run) names.push(e.name);
    return names;
  })();
  run.push(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  assert.equal(run.state, "running");
  assert.equal(run.runId, "r1");
  assert.equal(run.startSeq, 1);
  assert.equal((await run.accepted).runId, "r1");
  run.push(eventFrame(2, "agent_thinking", { text: "hmm" }));
  run.push(eventFrame(3, "agent_completed", { text: "hello" }));
  const late = [];
  for await (const e of run) late.push(e.seq);
  assert.deepEqual(await early, ["agent_started", "agent_thinking", "agent_completed"]);
  assert.deepEqual(late, [1, 2, 3]);
  assert.equal(await run.reply, "hello");
  assert.deepEqual(await run.settled, { state: "completed", reply: "hello" });
});

Deno.test("TrackedRun.pieces() yields each piece once to every iterator, early or late", async () => {
  const run = localRun();
  const early = Array.fromAsync(run.pieces());
  run.push(eventFrame(1, "agent_delta", { text: "a" }));
  run.push(eventFrame(2, "agent_delta", { text: "b" }));
  run.push(eventFrame(3, "agent_completed", { text: "abc" }));
  const late = await Array.fromAsync(run.pieces());
  assert.deepEqual((await early).map((p) => p.text), ["a", "b", "c"]);
  assert.deepEqual(late, await early);
  assert.equal(run.text, "abc");
});

Deno.test("TrackedRun.reply rejects with RunFailedError on agent_failed, with its typed code and partial text", async () => {
  const run = localRun();
  run.push(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  run.push(eventFrame(2, "agent_delta", { text: "so far" }));
  run.push(eventFrame(3, "agent_failed", {
    text: "so far",
    error: { code: "context_too_long", message: "Too long" },
  }));
  await assert.rejects(() => run.reply, (error: RunFailedError) => {
    assert.ok(error instanceof RunFailedError);
    assert.deepEqual([error.status, error.code, error.message, error.text], [
      "failed",
      "context_too_long",
      "Too long",
      "so far",
    ]);
    return true;
  });
  run.end({ status: "completed", text: "too late" }); // settling twice changes nothing
  assert.equal(run.state, "failed");
  assert.equal(run.error?.name, "RunFailedError");
});

Deno.test("TrackedRun.end() settles from a stored ending: the stored text replaces the pieces", async () => {
  const run = localRun();
  run.push(eventFrame(1, "agent_delta", { text: "par" }));
  run.end({ status: "cancelled", text: "partial" });
  assert.equal(run.state, "cancelled");
  assert.equal(run.text, "partial");
  await assert.rejects(() => run.reply, (error: RunFailedError) => error.status === "cancelled");
});

Deno.test("TrackedRun refused: accepted, reply, events and pieces all reject with ChatRefusedError", async () => {
  const run = localRun();
  run.refuse(new ChatRefusedError("thread_busy", "A run is already in flight"));
  await assert.rejects(() => run.accepted, ChatRefusedError);
  await assert.rejects(() => run.reply, /thread_busy/);
  await assert.rejects(async () => {
    for await (const _ of run) { /* nothing arrives */ }
  }, ChatRefusedError);
  await assert.rejects(() => Array.fromAsync(run.pieces()), ChatRefusedError);
  assert.equal((await run.settled).state, "refused");
});

Deno.test("TrackedRun.cancel() asks once, and not after the run settled", () => {
  const controller = new Controller();
  const run = localRun(controller);
  run.cancel();
  run.cancel();
  run.end({ status: "completed", text: "done" });
  run.cancel();
  assert.equal(controller.cancels, 1);
});

Deno.test("TrackedRun.approve() asks the controller, and resolves with the decision the events carry", async () => {
  const controller = new Controller();
  const run = localRun(controller);
  run.push(eventFrame(1, "tool_approval_requested", {
    toolCallId: "tc1",
    tool: "echo",
    input: { text: "x" },
    expiresAt: "2026-01-01T00:05:00.000Z",
  }));
  assert.deepEqual(run.pendingApprovals.map((a) => [a.runId, a.threadId, a.toolCallId]), [[
    "r1",
    "t1",
    "tc1",
  ]]);
  const decided = run.approve("tc1", false, "not now");
  assert.deepEqual(controller.approvals, [{
    toolCallId: "tc1",
    approved: false,
    reason: "not now",
  }]);
  run.push(eventFrame(2, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "echo",
    approved: false,
    by: "user",
    reason: "not now",
  }));
  assert.deepEqual(await decided, { approved: false, by: "user", reason: "not now" });
  assert.deepEqual(run.pendingApprovals, []);
  // Answering again returns the decision without asking the server.
  assert.deepEqual(await run.approve("tc1", true), {
    approved: false,
    by: "user",
    reason: "not now",
  });
  assert.equal(controller.approvals.length, 1);
  assert.throws(() => run.approve("", true), TypeError);
});

Deno.test("TrackedRun.approve() rejects with run_finished once the run ended without a decision", async () => {
  const run = localRun();
  const pending = run.approve("tc1", true);
  run.lose(new RunLostError("gone"));
  await assert.rejects(
    () => pending,
    (error: ApprovalRefusedError) => error.code === "run_finished",
  );
  await assert.rejects(() => run.approve("tc2", true), ApprovalRefusedError);
});

Deno.test("TrackedRun.onChange() is called for every event and at the end", () => {
  const run = localRun();
  let changes = 0;
  const off = run.onChange(() => changes++);
  run.push(eventFrame(1, "agent_delta", { text: "a" }));
  run.push(eventFrame(2, "agent_completed", { text: "a" }));
  off();
  run.push(eventFrame(3, "agent_delta", { text: "late" }));
  assert.equal(changes, 2);
});
