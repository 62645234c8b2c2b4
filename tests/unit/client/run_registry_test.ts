import assert from "node:assert/strict";
import { RunRegistry } from "../../../src/client/run_registry.ts";
import type { RunConnection } from "../../../src/client/run_registry.ts";
import { TimerGroup } from "../../../src/client/timer_group.ts";
import { DEFAULT_BACKOFF, RunFailedError, RunLostError } from "../../../src/client/mod.ts";
import type {
  ChatRun,
  HistoryMessage,
  HistoryPage,
  PendingApproval,
} from "../../../src/client/mod.ts";
import type { ClientFrame, ReadyFrame } from "../../../src/protocol/mod.ts";
import { eventFrame, ManualTimers, readyFrame, settle } from "./_fakes.ts";

/** A connection the test opens and closes; frames sent while open are kept. */
class FakeConnection implements RunConnection {
  sent: ClientFrame[] = [];
  ready?: ReadyFrame;
  limit = 65_536;
  send(frame: ClientFrame): boolean {
    if (!this.ready) return false;
    this.sent.push(frame);
    return true;
  }
  current(): ReadyFrame | undefined {
    return this.ready;
  }
  maxFrameBytes(): number {
    return this.limit;
  }
  /** Frames sent since the last call. */
  take(): ClientFrame[] {
    return this.sent.splice(0);
  }
}

/** History pages by thread; `null` for a thread the server does not know. */
class FakeHistory {
  threads = new Map<string, HistoryMessage[] | null>();
  reads = 0;
  listMessages(threadId: string): Promise<HistoryPage<HistoryMessage> | null> {
    this.reads++;
    const messages = this.threads.get(threadId);
    return Promise.resolve(messages ? { items: messages } : null);
  }
}

function setup() {
  const connection = new FakeConnection();
  const history = new FakeHistory();
  const timers = new ManualTimers();
  const runs: ChatRun[] = [];
  const approvals: (readonly PendingApproval[])[] = [];
  const registry = new RunRegistry({
    connection,
    history,
    timers: new TimerGroup(timers),
    backoff: { ...DEFAULT_BACKOFF },
    maxChatRetries: 2,
    maxChatAttempts: 3,
    events: { run: (run) => runs.push(run), approvals: (list) => approvals.push(list) },
  });
  /** Opens a connection: the registry sends what waits. */
  const connect = (ready: Partial<ReadyFrame> = {}, reset = false) => {
    connection.ready = readyFrame(ready);
    registry.connected(connection.ready, { reset });
  };
  const disconnect = (code = 1006) => {
    connection.ready = undefined;
    registry.disconnected(code);
  };
  return { registry, connection, history, timers, runs, approvals, connect, disconnect };
}

function message(
  role: "user" | "assistant",
  text: string,
  extra: Partial<HistoryMessage> = {},
): HistoryMessage {
  return {
    id: `m-${role}`,
    role,
    text,
    runId: "r1",
    seq: null,
    createdAt: "",
    runStatus: "completed",
    ...extra,
  };
}

Deno.test("RunRegistry.chat() holds a chat until connected, and sends it again after a lost connection", () => {
  const { registry, connection, connect, disconnect, runs } = setup();
  const run = registry.chat("hi", { id: "c1", threadId: "t1" });
  assert.deepEqual(runs, [run]);
  assert.deepEqual(connection.take(), []);
  connect();
  assert.deepEqual(connection.take(), [{ type: "chat", id: "c1", threadId: "t1", text: "hi" }]);
  disconnect();
  connect();
  assert.deepEqual(connection.take().map((f) => f.type), ["chat"]);
  registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  disconnect();
  connect();
  assert.deepEqual(connection.take(), [], "acknowledged: not sent again");
  assert.throws(() => registry.chat("again", { id: "c1" }), /already in flight/);
});

Deno.test("RunRegistry.disconnected() counts only cuts (1006) of a chat sent and not acknowledged", () => {
  const { registry, connect, disconnect } = setup();
  const run = registry.chat("hi", { id: "c1" });
  disconnect(1006); // never sent: not a cut
  connect();
  disconnect(1012); // sent, then a drain: not a cut
  connect();
  disconnect(1006);
  connect();
  disconnect(1006);
  assert.equal(run.state, "sending");
  connect();
  disconnect(1006);
  assert.equal(run.state, "refused");
});

Deno.test("RunRegistry.cancel() waits for the run id, and a cancel by id is sent once connected", () => {
  const { registry, connection, connect } = setup();
  const run = registry.chat("hi", { id: "c1" });
  run.cancel();
  registry.cancelRun("r-other");
  connect();
  assert.deepEqual(connection.take(), [
    { type: "chat", id: "c1", threadId: undefined, text: "hi" },
    { type: "cancel", runId: "r-other" },
  ]);
  registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  assert.deepEqual(connection.take(), [{ type: "cancel", runId: "r1" }]);
  assert.equal(
    registry.refused({ type: "error", code: "run_finished", message: "done", ref: "r1" }),
    true,
  );
});

Deno.test("RunRegistry.deliver() binds our chat's run from its agent_started when the ack was lost", () => {
  const { registry, connection, connect, disconnect } = setup();
  const run = registry.chat("hi", { id: "c1" });
  connect();
  disconnect();
  connect({ resumed: true });
  connection.take();
  registry.deliver(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  assert.equal(run.runId, "r1");
  assert.equal(run.state, "running");
  disconnect();
  connect({ resumed: true });
  assert.deepEqual(connection.take(), [], "its events prove the server has it: not resent");
});

Deno.test("RunRegistry.deliver() starts a remote run once, and not again for a settled run's late events", async () => {
  const { registry, runs } = setup();
  registry.deliver(eventFrame(1, "agent_started", { chatId: "x", text: "hi" }, { runId: "r9" }));
  registry.deliver(eventFrame(2, "agent_completed", { text: "yes" }, { runId: "r9" }));
  assert.equal(runs.length, 1);
  assert.equal(runs[0].local, false);
  assert.equal(runs[0].state, "completed");
  await settle();
  registry.deliver(eventFrame(3, "agent_delta", { text: "late" }, { runId: "r9" }));
  assert.equal(runs.length, 1);
  assert.deepEqual(registry.runs, []);
});

Deno.test("RunRegistry.connected() after a reset settles runs not replayed from the history", async (t) => {
  await t.step("a completed run gets its stored reply", async () => {
    const { registry, history, connect } = setup();
    history.threads.set("t1", [
      message("user", "hi", { runStatus: "completed" }),
      message("assistant", "hello", { runStatus: "completed" }),
    ]);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2" }, true);
    assert.equal(await run.reply, "hello");
  });
  await t.step("a cancelled run settles cancelled with its partial text", async () => {
    const { registry, history, connect } = setup();
    history.threads.set("t1", [
      message("user", "hi", { runStatus: "cancelled" }),
      message("assistant", "hal", { runStatus: "cancelled" }),
    ]);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2" }, true);
    await assert.rejects(() => run.reply, (e: RunFailedError) => e.status === "cancelled");
    assert.equal(run.text, "hal");
  });
  await t.step("a run still running is left to its live events", async () => {
    const { registry, history, connect } = setup();
    history.threads.set("t1", [message("user", "hi", { runStatus: "running" })]);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2" }, true);
    await settle(10);
    assert.equal(history.reads, 1);
    assert.equal(run.state, "running");
    registry.deliver(eventFrame(9, "agent_completed", { text: "done" }));
    assert.equal(await run.reply, "done");
  });
  await t.step("a run the history does not hold is asked again with the same chat", async () => {
    const { registry, history, connection, connect } = setup();
    history.threads.set("t1", []);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connection.take();
    connect({ epoch: "e2" }, true);
    await settle(10);
    assert.deepEqual(connection.take(), [{ type: "chat", id: "c1", threadId: "t1", text: "hi" }]);
    registry.acknowledged({
      type: "ack",
      id: "c1",
      threadId: "t1",
      runId: "r1",
      duplicate: true,
      status: "failed",
    });
    await assert.rejects(() => run.reply, (e: RunFailedError) => e.status === "failed");
  });
  await t.step("a thread the server lost makes the run lost", async () => {
    const { registry, history, connect } = setup();
    history.threads.set("t1", null);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2" }, true);
    await assert.rejects(() => run.reply, RunLostError);
  });
  await t.step("an active run is not read from the history: it is replayed", async () => {
    const { registry, history, connect } = setup();
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2", activeRuns: [{ runId: "r1", threadId: "t1", startSeq: 1 }] }, true);
    await settle(10);
    assert.equal(history.reads, 0);
    assert.equal(run.state, "running");
  });
});

Deno.test("RunRegistry.refused() answers false for an error that answers nothing it tracks", () => {
  const { registry } = setup();
  assert.equal(registry.refused({ type: "error", code: "bad_frame", message: "?" }), false);
  assert.equal(
    registry.refused({ type: "error", code: "not_found", message: "?", ref: "nobody" }),
    false,
  );
});

Deno.test("RunRegistry.pendingApprovals lists every run's waiting calls and announces changes once", async () => {
  const { registry, approvals } = setup();
  const requested = (seq: number, runId: string, toolCallId: string) =>
    eventFrame(seq, "tool_approval_requested", {
      toolCallId,
      tool: "echo",
      input: {},
      expiresAt: "2026-01-01T00:05:00.000Z",
    }, { runId });
  registry.deliver(eventFrame(1, "agent_started", { chatId: "a", text: "a" }, { runId: "ra" }));
  registry.deliver(eventFrame(2, "agent_started", { chatId: "b", text: "b" }, { runId: "rb" }));
  registry.deliver(requested(3, "ra", "tc1"));
  registry.deliver(requested(4, "rb", "tc2"));
  assert.deepEqual(registry.pendingApprovals.map((a) => a.toolCallId), ["tc1", "tc2"]);
  assert.deepEqual(approvals.map((list) => list.map((a) => a.toolCallId)), [["tc1"], [
    "tc1",
    "tc2",
  ]]);
  registry.deliver(eventFrame(5, "agent_cancelled", { text: "" }, { runId: "ra" }));
  await settle();
  assert.deepEqual(approvals.at(-1)?.map((a) => a.toolCallId), ["tc2"]);
});

Deno.test("RunRegistry.approve() waits for the run id, and refuses a reason too long for a frame", async () => {
  const { registry, connection, connect } = setup();
  connect();
  const run = registry.chat("hi", { id: "c1" });
  connection.take();
  const approved = run.approve("tc1", true);
  assert.deepEqual(connection.take(), [], "no run id yet");
  registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  assert.deepEqual(connection.take(), [
    { type: "approve", runId: "r1", toolCallId: "tc1", approved: true },
  ]);
  connection.limit = 200;
  const tooLong = run.approve("tc2", false, "x".repeat(500));
  await assert.rejects(() => tooLong, /frame_too_large/);
  assert.deepEqual(connection.take().map((f) => f.type), ["approve"], "only tc1, sent again");
  registry.deliver(eventFrame(1, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "echo",
    approved: true,
    by: "user",
  }));
  assert.deepEqual(await approved, { approved: true, by: "user" });
});

Deno.test("RunRegistry.threadDeleted() settles the thread's runs in flight as cancelled", async () => {
  const { registry, connect } = setup();
  connect();
  const kept = registry.chat("other", { id: "c0", threadId: "t0" });
  const run = registry.chat("hi", { id: "c1", threadId: "t1" });
  registry.threadDeleted("t1");
  await assert.rejects(() => run.reply, (e: RunFailedError) => e.status === "cancelled");
  assert.equal(kept.state, "sending");
});

Deno.test("RunRegistry.close() loses every run not settled", async () => {
  const { registry, connect } = setup();
  connect();
  const run = registry.chat("hi", {});
  registry.close(new Error("closed"));
  assert.equal((await run.settled).state, "lost");
});
