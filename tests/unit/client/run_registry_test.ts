import assert from "node:assert/strict";
import { RunRegistry } from "../../../src/client/run_registry.ts";
import type { RunConnection } from "../../../src/client/run_registry.ts";
import { TimerGroup } from "../../../src/client/timer_group.ts";
import { DEFAULT_BACKOFF, RunFailedError, RunLostError } from "../../../src/client/mod.ts";
import type { ChatRun, HistoryMessage, HistoryPage } from "../../../src/client/mod.ts";
import type { ClientFrame, ReadyFrame } from "../../../src/protocol/mod.ts";
import { eventFrame, ManualTimers, readyFrame, settle } from "./_fakes.ts";

/** A connection the test opens and closes; frames sent while open are kept. */
class FakeConnection implements RunConnection {
  sent: ClientFrame[] = [];
  ready?: ReadyFrame;
  send(frame: ClientFrame): boolean {
    if (!this.ready) return false;
    this.sent.push(frame);
    return true;
  }
  current(): ReadyFrame | undefined {
    return this.ready;
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
  const registry = new RunRegistry({
    connection,
    history,
    timers: new TimerGroup(timers),
    backoff: { ...DEFAULT_BACKOFF },
    maxChatRetries: 2,
    maxFrameBytes: 65_536,
    events: { run: (run) => runs.push(run) },
  });
  /** Opens a connection: the registry sends what waits. */
  const connect = (ready: Partial<ReadyFrame> = {}, reset = false) => {
    connection.ready = readyFrame(ready);
    registry.connected(connection.ready, { reset });
  };
  const disconnect = () => {
    connection.ready = undefined;
  };
  return { registry, connection, history, timers, runs, connect, disconnect };
}

function message(
  role: "user" | "assistant",
  text: string,
  extra: Partial<HistoryMessage> = {},
): HistoryMessage {
  return { id: `m-${role}`, role, text, runId: "r1", seq: null, createdAt: "", ...extra };
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

Deno.test("RunRegistry.deliver() starts a remote run once, and not again for a settled run's late events", () => {
  const { registry, runs } = setup();
  registry.deliver(eventFrame(1, "agent_started", { chatId: "x", text: "hi" }, { runId: "r9" }));
  registry.deliver(eventFrame(2, "agent_completed", { text: "yes" }, { runId: "r9" }));
  assert.equal(runs.length, 1);
  assert.equal(runs[0].local, false);
  assert.equal(runs[0].state, "completed");
  return settle().then(() => {
    registry.deliver(eventFrame(3, "agent_delta", { text: "late" }, { runId: "r9" }));
    assert.equal(runs.length, 1);
    assert.deepEqual(registry.runs, []);
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

Deno.test("RunRegistry.close() loses every run not settled", async () => {
  const { registry, connect } = setup();
  connect();
  const run = registry.chat("hi", {});
  registry.close(new Error("closed"));
  assert.equal((await run.settled).state, "lost");
});

Deno.test("RunRegistry.connected() after a reset settles runs not replayed from the history", async (t) => {
  await t.step("a run with a stored reply completes with it", async () => {
    const { registry, history, connect } = setup();
    history.threads.set("t1", [message("user", "hi"), message("assistant", "hello")]);
    const run = registry.chat("hi", { id: "c1" });
    connect();
    registry.acknowledged({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
    connect({ epoch: "e2" }, true);
    assert.equal(await run.reply, "hello");
  });
  await t.step("a run without a reply is asked again with the same chat", async () => {
    const { registry, history, connection, connect } = setup();
    history.threads.set("t1", [message("user", "hi")]);
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
