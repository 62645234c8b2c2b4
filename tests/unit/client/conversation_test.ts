import assert from "node:assert/strict";
import { Conversation } from "../../../src/client/mod.ts";
import type {
  ChatOptions,
  ChatRun,
  ClientEventMap,
  ConversationClient,
  HistoryMessage,
  HistoryPage,
} from "../../../src/client/mod.ts";
import { TrackedRun } from "../../../src/client/chat_run.ts";
import type { EventFrame } from "../../../src/protocol/mod.ts";

/** A client double: events and history are pushed by the test. */
class FakeClient implements ConversationClient {
  history = new Map<string, HistoryMessage[]>();
  runs: TrackedRun[] = [];
  cancelled: string[] = [];
  #listeners = new Map<string, Set<(detail: never) => void>>();

  on<K extends keyof ClientEventMap>(type: K, listener: (d: ClientEventMap[K]) => void) {
    const set = this.#listeners.get(type) ?? new Set();
    this.#listeners.set(type, set);
    set.add(listener as (detail: never) => void);
    return () => set.delete(listener as (detail: never) => void);
  }

  emit<K extends keyof ClientEventMap>(type: K, detail: ClientEventMap[K]): void {
    for (const listener of this.#listeners.get(type) ?? []) {
      (listener as (d: ClientEventMap[K]) => void)(detail);
    }
  }

  chat(text: string, options: ChatOptions = {}): ChatRun {
    const run = new TrackedRun(
      { local: true, chatId: `chat-${this.runs.length + 1}`, text, threadId: options.threadId },
      () => {},
    );
    this.runs.push(run);
    return run;
  }

  cancel(runId: string): void {
    this.cancelled.push(runId);
  }

  listMessages(threadId: string): Promise<HistoryPage<HistoryMessage> | null> {
    const items = this.history.get(threadId);
    return Promise.resolve(items ? { items } : null);
  }
}

let seq = 0;
function event(runId: string, name: string, data: Record<string, unknown> = {}): EventFrame {
  return { type: "event", seq: ++seq, threadId: "t1", runId, name, data, ts: "" };
}

function message(runId: string, role: "user" | "assistant", text: string): HistoryMessage {
  return {
    id: `${runId}-${role}`,
    role,
    text,
    runId,
    seq: null,
    createdAt: "",
    runStatus: "completed",
  };
}

function runEvents(runId: string, chatId: string, text: string, reply: string): EventFrame[] {
  return [
    event(runId, "agent_started", { chatId, text }),
    event(runId, "agent_thinking", { text: "hmm" }),
    event(runId, "tool_executing", { toolCallId: "c1", tool: "calculator", input: { e: 1 } }),
    event(runId, "tool_completed", { toolCallId: "c1", tool: "calculator", output: { v: 2 } }),
    event(runId, "agent_completed", { text: reply }),
  ];
}

Deno.test("Conversation.send() shows a turn at once and fills it from the run's events", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client);
  conversation.send("what is 6*7");
  assert.deepEqual(conversation.turns.map((t) => [t.userText, t.status]), [[
    "what is 6*7",
    "sending",
  ]]);
  assert.equal(conversation.busy, true);
  assert.throws(() => conversation.send("again"), /in flight/);
  const run = client.runs[0];
  run.acknowledge({ type: "ack", id: run.chatId!, threadId: "t1", runId: "r1" });
  await run.accepted;
  await Promise.resolve();
  assert.equal(conversation.threadId, "t1");
  for (const e of runEvents("r1", run.chatId!, "what is 6*7", "6*7 = 42")) {
    client.emit("event", e);
  }
  const [turn] = conversation.turns;
  assert.equal(turn.status, "completed");
  assert.equal(turn.reply, "6*7 = 42");
  assert.deepEqual(turn.steps.map((s) => s.kind), ["thinking", "tool"]);
  const tool = turn.steps[1];
  assert.ok(tool.kind === "tool" && tool.done && tool.tool === "calculator");
  assert.deepEqual(tool.output, { v: 2 });
  assert.equal(conversation.busy, false);
  conversation.dispose();
});

Deno.test("Conversation.load() merges the history with live turns by run, each once", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  // A run in flight is replayed before the history arrives...
  client.emit("event", event("r2", "agent_started", { chatId: "c2", text: "second" }));
  client.emit("event", event("r2", "agent_thinking", { text: "thinking" }));
  client.history.set("t1", [
    message("r1", "user", "first"),
    message("r1", "assistant", "reply one"),
    message("r2", "user", "second"),
  ]);
  assert.equal(await conversation.load(), true);
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.userText, t.status, t.reply]), [
    ["r1", "first", "completed", "reply one"],
    ["r2", "second", "running", undefined],
  ]);
  assert.equal(conversation.turns[1].steps.length, 1);
  // ...and loading again (a reset) changes nothing that was already right.
  client.history.set("t1", [...client.history.get("t1")!, message("r2", "assistant", "two")]);
  await conversation.load();
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.status, t.reply]), [
    ["r1", "completed", "reply one"],
    ["r2", "completed", "two"],
  ]);
  conversation.dispose();
});

Deno.test("Conversation.load() keeps what it shows when the server lost the thread", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  client.emit("event", event("r1", "agent_started", { chatId: "c1", text: "hello" }));
  let changes = 0;
  conversation.onChange(() => changes++);
  assert.equal(await conversation.load(), false);
  assert.equal(conversation.threadId, undefined);
  assert.equal(conversation.turns.length, 1);
  assert.match(conversation.notice ?? "", /no longer has this conversation/);
  assert.ok(changes > 0);
  conversation.dispose();
});

Deno.test("Conversation shows a run's settlement when no event tells it (lost after a reset)", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client);
  const run = conversation.send("hello") as TrackedRun;
  run.acknowledge({ type: "ack", id: run.chatId!, threadId: "t1", runId: "r1" });
  const { RunLostError } = await import("../../../src/client/mod.ts");
  run.lose(new RunLostError("gone with the server"));
  await run.settled;
  await Promise.resolve();
  assert.equal(conversation.turns[0].status, "lost");
  assert.equal(conversation.turns[0].error, "gone with the server");
  conversation.cancel();
  assert.deepEqual(client.cancelled, []);
  conversation.dispose();
});

Deno.test("Conversation ignores other threads' events and unknown event names", () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  client.emit("event", { ...event("rx", "agent_started", { text: "x" }), threadId: "other" });
  client.emit("event", event("r1", "agent_started", { text: "mine" }));
  client.emit("event", event("r1", "agent_dreaming", { text: "?" }));
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.steps.length]), [["r1", 0]]);
  conversation.dispose();
});
