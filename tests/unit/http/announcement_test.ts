import assert from "node:assert/strict";
import { announcementFor } from "../../../src/http/static/announcement.ts";
import { RUN_FAILURE_TEXT } from "../../../src/http/static/failure_text.ts";
import type { EventData, EventName, RunEvent } from "../../../src/protocol/mod.ts";

function event<N extends EventName>(name: N, data: EventData[N]): RunEvent {
  return {
    type: "event",
    seq: 1,
    threadId: "t1",
    runId: "r1",
    name,
    data,
    ts: "2025-01-01T00:00:00.000Z",
  } as RunEvent;
}

Deno.test("announcementFor() says when a reply starts and how it ends, never each piece", () => {
  assert.equal(
    announcementFor(event("agent_started", { chatId: "c1", text: "hi" })),
    "The agent is replying.",
  );
  assert.equal(announcementFor(event("agent_delta", { text: "Hel" })), undefined);
  assert.equal(announcementFor(event("agent_thinking", { text: "Hm", delta: true })), undefined);
  assert.equal(
    announcementFor(event("agent_completed", { text: "Hello" })),
    "The reply is complete.",
  );
  assert.equal(announcementFor(event("agent_cancelled", { text: "" })), "The reply was stopped.");
  assert.equal(
    announcementFor(
      event("agent_failed", { text: "", error: { code: "timeout", message: "no byte" } }),
    ),
    `The reply failed. ${RUN_FAILURE_TEXT.timeout}`,
  );
});

Deno.test("announcementFor() says which tool needs approval and what was decided", () => {
  const call = { toolCallId: "tc_1", tool: "echo" };
  assert.equal(
    announcementFor(
      event("tool_approval_requested", { ...call, input: {}, expiresAt: "2025-01-01T00:05:00Z" }),
    ),
    "The tool echo needs your approval.",
  );
  assert.equal(
    announcementFor(event("tool_approval_resolved", { ...call, approved: false, by: "user" })),
    "The tool echo was denied.",
  );
  assert.equal(
    announcementFor(event("tool_approval_resolved", { ...call, approved: false, by: "timeout" })),
    "The tool echo was not approved.",
  );
  assert.equal(
    announcementFor(event("tool_completed", { ...call, error: { code: "denied", message: "no" } })),
    "The tool echo failed.",
  );
  assert.equal(
    announcementFor(event("tool_completed", { ...call, output: { text: "x" } })),
    undefined,
  );
});
