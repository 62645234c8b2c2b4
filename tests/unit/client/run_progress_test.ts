import assert from "node:assert/strict";
import { milestoneOf, RunProgress } from "../../../src/client/run_progress.ts";
import { asRunEvent } from "../../../src/protocol/mod.ts";
import type { EventData, EventName, RunEvent } from "../../../src/protocol/mod.ts";
import { eventFrame } from "./_fakes.ts";

function ev<N extends EventName>(seq: number, name: N, data: EventData[N]): RunEvent {
  return asRunEvent(eventFrame(seq, name, data))!;
}

const STREAM: RunEvent[] = [
  ev(1, "agent_started", { chatId: "c1", text: "hi" }),
  ev(2, "agent_thinking", { text: "Let me", delta: false }),
  ev(3, "agent_thinking", { text: " think.", delta: true }),
  ev(4, "agent_delta", { text: "Hel" }),
  ev(5, "agent_delta", { text: "lo" }),
  ev(6, "agent_thinking", { text: "Again.", delta: false }),
  ev(7, "agent_delta", { text: "\n\nworld" }),
];

Deno.test("RunProgress.apply() assembles the reply and the reasoning blocks from their pieces", () => {
  const progress = new RunProgress();
  const added = STREAM.flatMap((event) => progress.apply(event));
  assert.equal(progress.text, "Hello\n\nworld");
  assert.equal(progress.reasoning, "Let me think.\n\nAgain.");
  assert.deepEqual(added.map((p) => [p.kind, p.text]), [
    ["reasoning", "Let me"],
    ["reasoning", " think."],
    ["text", "Hel"],
    ["text", "lo"],
    ["reasoning", "Again."],
    ["text", "\n\nworld"],
  ]);
  assert.deepEqual(
    added.filter((p) => p.kind === "reasoning").map((p) => p.kind === "reasoning" && p.block),
    [0, 0, 1],
  );
  assert.deepEqual(progress.steps.map((s) => [s.kind, s.seq]), [["thinking", 2], ["thinking", 6]]);
});

Deno.test("RunProgress.apply() takes each piece once when the run is replayed from agent_started", () => {
  const progress = new RunProgress();
  for (const event of STREAM.slice(0, 5)) progress.apply(event); // "Hel" + "lo" arrived
  // The log was replaced: the run replays from its start, with new seqs and other boundaries.
  const replay = [
    ev(1, "agent_started", { chatId: "c1", text: "hi" }),
    ev(2, "agent_thinking", { text: "Let me think.", delta: false }),
    ev(3, "agent_delta", { text: "Hello" }),
    ev(4, "agent_thinking", { text: "Again.", delta: false }),
    ev(5, "agent_delta", { text: "\n\nworld" }),
  ];
  const added = replay.flatMap((event) => progress.apply(event));
  assert.deepEqual(added.map((p) => [p.kind, p.text]), [
    ["reasoning", "Again."],
    ["text", "\n\nworld"],
  ]);
  assert.equal(progress.text, "Hello\n\nworld");
  assert.equal(progress.reasoning, "Let me think.\n\nAgain.");
});

Deno.test("RunProgress.apply() lets the terminal text replace what the pieces made", async (t) => {
  await t.step("a longer final text adds its suffix as a text piece", () => {
    const progress = new RunProgress();
    progress.apply(ev(1, "agent_delta", { text: "Hel" }));
    const added = progress.apply(ev(2, "agent_completed", { text: "Hello", finishReason: "stop" }));
    assert.deepEqual(added, [{ kind: "text", text: "lo", seq: 2 }]);
    assert.equal(progress.ending?.status, "completed");
    assert.equal(progress.ending?.finishReason, "stop");
  });
  await t.step("a different final text replaces the reply", () => {
    const progress = new RunProgress();
    progress.apply(ev(1, "agent_delta", { text: "draft" }));
    const added = progress.apply(ev(2, "agent_completed", { text: "final" }));
    assert.deepEqual(added, [{ kind: "replace", text: "final", seq: 2 }]);
    assert.equal(progress.text, "final");
  });
  await t.step("a non-streaming agent's reply is one piece, and nothing follows the end", () => {
    const progress = new RunProgress();
    const added = progress.apply(ev(1, "agent_failed", {
      text: "partial",
      error: { code: "provider_unavailable", message: "down" },
    }));
    assert.deepEqual(added.map((p) => p.text), ["partial"]);
    assert.deepEqual(progress.ending?.error, { code: "provider_unavailable", message: "down" });
    assert.deepEqual(progress.apply(ev(2, "agent_delta", { text: "late" })), []);
    assert.equal(progress.text, "partial");
  });
});

Deno.test("RunProgress.apply() follows a tool call through approval, execution and completion", () => {
  const progress = new RunProgress();
  const input = { expression: "2+2" };
  progress.apply(ev(1, "tool_approval_requested", {
    toolCallId: "tc1",
    tool: "calculator",
    input,
    expiresAt: "2026-01-01T00:05:00.000Z",
  }));
  assert.equal(progress.toolCall("tc1")?.status, "awaiting_approval");
  assert.deepEqual(progress.awaitingApproval.map((c) => c.toolCallId), ["tc1"]);
  progress.apply(ev(2, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "calculator",
    approved: true,
    by: "user",
  }));
  assert.equal(progress.toolCall("tc1")?.status, "approved");
  assert.deepEqual(progress.awaitingApproval, []);
  progress.apply(ev(3, "tool_executing", { toolCallId: "tc1", tool: "calculator", input }));
  assert.equal(progress.toolCall("tc1")?.status, "executing");
  progress.apply(ev(4, "tool_completed", { toolCallId: "tc1", tool: "calculator", output: 4 }));
  assert.deepEqual(progress.toolCall("tc1"), {
    toolCallId: "tc1",
    tool: "calculator",
    input,
    status: "completed",
    approval: {
      expiresAt: "2026-01-01T00:05:00.000Z",
      resolution: { approved: true, by: "user" },
    },
    output: 4,
    seq: 1,
  });
  const [step] = progress.steps;
  assert.ok(step.kind === "tool" && step.done);
});

Deno.test("RunProgress.apply() marks a denied call, then its error", () => {
  const progress = new RunProgress();
  progress.apply(ev(1, "tool_approval_requested", {
    toolCallId: "tc1",
    tool: "echo",
    input: {},
    expiresAt: "2026-01-01T00:05:00.000Z",
  }));
  progress.apply(ev(2, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "echo",
    approved: false,
    by: "user",
    reason: "no",
  }));
  assert.equal(progress.toolCall("tc1")?.status, "denied");
  progress.apply(ev(3, "tool_completed", {
    toolCallId: "tc1",
    tool: "echo",
    error: { code: "denied", message: "Denied: no" },
  }));
  assert.equal(progress.toolCall("tc1")?.status, "failed");
  assert.equal(progress.toolCall("tc1")?.error?.code, "denied");
  assert.equal(progress.toolCall("tc1")?.approval?.resolution?.reason, "no");
});

Deno.test("RunProgress.end() settles with the stored reply and ignores a second ending", () => {
  const progress = new RunProgress();
  progress.apply(ev(1, "agent_delta", { text: "par" }));
  const added = progress.end({ status: "cancelled", text: "partial" });
  assert.deepEqual(added.map((p) => [p.kind, p.text]), [["text", "tial"]]);
  progress.end({ status: "completed", text: "other" });
  assert.deepEqual(progress.ending, { status: "cancelled", text: "partial" });
});

Deno.test("milestoneOf() marks what a person waits for, and nothing for a piece or an output", () => {
  const at = (name: string, data: Record<string, unknown>) =>
    ({ type: "event", seq: 1, threadId: "t", runId: "r", name, data, ts: "" }) as RunEvent;
  assert.deepEqual(milestoneOf(at("agent_started", { chatId: "c", text: "hi" })), {
    kind: "started",
  });
  assert.equal(milestoneOf(at("agent_delta", { text: "x" })), undefined);
  assert.equal(
    milestoneOf(at("tool_completed", { toolCallId: "1", tool: "t", output: 1 })),
    undefined,
  );
  assert.deepEqual(
    milestoneOf(
      at("tool_approval_resolved", { toolCallId: "1", tool: "t", approved: false, by: "timeout" }),
    ),
    { kind: "approval_decided", tool: "t", approved: false, by: "timeout" },
  );
  assert.deepEqual(
    milestoneOf(at("agent_failed", { text: "", error: { code: "timeout", message: "m" } })),
    { kind: "failed", error: { code: "timeout", message: "m" } },
  );
});
