import assert from "node:assert/strict";
import { Conversation, RunLostError } from "../../../src/client/mod.ts";
import type {
  ChatOptions,
  ChatRun,
  ClientEventMap,
  ConversationClient,
  HistoryMessage,
  HistoryPage,
  PageOptions,
} from "../../../src/client/mod.ts";
import { TrackedRun } from "../../../src/client/chat_run.ts";
import { Emitter } from "../../../src/client/emitter.ts";
import type { EventFrame } from "../../../src/protocol/mod.ts";
import { eventFrame, settle } from "./_fakes.ts";

const NO_CONTROL = { cancel() {}, approve() {} };

/** A client double: runs, events and history are pushed by the test. */
class FakeClient implements ConversationClient {
  history = new Map<string, HistoryPage<HistoryMessage>[]>();
  sent: TrackedRun[] = [];
  followed: TrackedRun[] = [];
  cancelled: string[] = [];
  #events = new Emitter<ClientEventMap>();

  get runs(): readonly ChatRun[] {
    return this.followed.filter((run) => !run.done);
  }

  on<K extends keyof ClientEventMap>(type: K, listener: (d: ClientEventMap[K]) => void) {
    return this.#events.on(type, listener);
  }

  emit<K extends keyof ClientEventMap>(type: K, detail: ClientEventMap[K]): void {
    this.#events.emit(type, detail);
  }

  chat(text: string, options: ChatOptions = {}): ChatRun {
    const run = new TrackedRun(
      { local: true, chatId: `chat-${this.sent.length + 1}`, userText: text, ...options },
      NO_CONTROL,
    );
    this.sent.push(run);
    this.followed.push(run);
    this.emit("run", run);
    return run;
  }

  /** A run of another tab becomes known. */
  remote(runId: string, threadId = "t1"): TrackedRun {
    const run = new TrackedRun({ local: false, runId, threadId }, NO_CONTROL);
    this.followed.push(run);
    this.emit("run", run);
    return run;
  }

  cancel(runId: string): void {
    this.cancelled.push(runId);
  }

  listMessages(
    threadId: string,
    options: PageOptions = {},
  ): Promise<HistoryPage<HistoryMessage> | null> {
    const pages = this.history.get(threadId);
    if (!pages) return Promise.resolve(null);
    const index = options.before === undefined ? 0 : Number(options.before);
    return Promise.resolve(pages[index]);
  }
}

let seq = 0;
function event(runId: string, name: string, data: Record<string, unknown> = {}): EventFrame {
  return { type: "event", seq: ++seq, threadId: "t1", runId, name, data, ts: "" };
}

function message(
  runId: string,
  role: "user" | "assistant",
  text: string,
  extra: Partial<HistoryMessage> = {},
): HistoryMessage {
  return {
    id: `${runId}-${role}`,
    role,
    text,
    runId,
    seq: null,
    createdAt: "",
    runStatus: "completed",
    ...extra,
  };
}

Deno.test("Conversation.send() shows a turn at once and fills it as the run streams", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client);
  const run = conversation.send("what is 6*7") as TrackedRun;
  assert.deepEqual(conversation.turns.map((t) => [t.userText, t.status]), [[
    "what is 6*7",
    "sending",
  ]]);
  assert.equal(conversation.busy, true);
  assert.throws(() => conversation.send("again"), /in flight/);
  run.acknowledge({ type: "ack", id: run.chatId!, threadId: "t1", runId: "r1" });
  await settle();
  assert.equal(conversation.threadId, "t1");
  const replies: (string | undefined)[] = [];
  conversation.onChange(() => replies.push(conversation.turns[0].reply));
  run.push(event("r1", "agent_started", { chatId: run.chatId, text: "what is 6*7" }));
  run.push(event("r1", "agent_thinking", { text: "hmm" }));
  run.push(event("r1", "tool_executing", { toolCallId: "c1", tool: "calculator", input: {} }));
  run.push(event("r1", "agent_delta", { text: "6*7 " }));
  run.push(event("r1", "tool_completed", { toolCallId: "c1", tool: "calculator", output: 42 }));
  run.push(event("r1", "agent_completed", { text: "6*7 = 42" }));
  assert.deepEqual([...new Set(replies)], [undefined, "6*7 ", "6*7 = 42"], "it grows");
  const [turn] = conversation.turns;
  assert.equal(turn.status, "completed");
  assert.deepEqual(turn.steps.map((s) => s.kind), ["thinking", "tool"]);
  const tool = turn.steps[1];
  assert.ok(tool.kind === "tool" && tool.done && tool.tool === "calculator");
  assert.equal(tool.output, 42);
  assert.equal(conversation.busy, false);
  conversation.dispose();
});

Deno.test("Conversation.load() merges the history with followed runs by run, each once, in seq order", async () => {
  const client = new FakeClient();
  // Another tab's run in flight is followed before the conversation opens...
  const live = client.remote("r2");
  live.push(event("r2", "agent_started", { chatId: "c2", text: "second" }));
  live.push(event("r2", "agent_delta", { text: "so f" }));
  const conversation = new Conversation(client, { threadId: "t1" });
  client.history.set("t1", [{
    items: [
      message("r1", "user", "first", { runStatus: "completed", seq: 1 }),
      message("r1", "assistant", "reply one", { runStatus: "completed", seq: 3 }),
      message("r2", "user", "second", { runStatus: "running", seq: 4 }),
    ],
  }]);
  assert.equal(await conversation.load(), true);
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.userText, t.status, t.reply]), [
    ["r1", "first", "completed", "reply one"],
    ["r2", "second", "running", "so f"],
  ]);
  assert.equal(conversation.turns[1].run, live, "the reply in flight stays live");
  // ...and loading again (a reset) changes nothing that was already right.
  live.push(event("r2", "agent_completed", { text: "so far" }));
  client.history.set("t1", [{
    items: [
      ...client.history.get("t1")![0].items,
      message("r2", "assistant", "so far", { runStatus: "completed", seq: 9 }),
    ],
  }]);
  await conversation.load();
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.status, t.reply]), [
    ["r1", "completed", "reply one"],
    ["r2", "completed", "so far"],
  ]);
  conversation.dispose();
});

Deno.test("Conversation shows a failed run from the history with its partial reply and code", async () => {
  const client = new FakeClient();
  client.history.set("t1", [{
    items: [
      message("r1", "user", "hi", { runStatus: "failed" }),
      message("r1", "assistant", "I was", {
        runStatus: "failed",
        error: { code: "provider_unavailable", message: "The model is unreachable" },
      }),
    ],
  }]);
  const conversation = new Conversation(client, { threadId: "t1" });
  await conversation.load();
  const [turn] = conversation.turns;
  assert.deepEqual([turn.status, turn.reply, turn.errorCode, turn.error], [
    "failed",
    "I was",
    "provider_unavailable",
    "The model is unreachable",
  ]);
  conversation.dispose();
});

Deno.test("Conversation.loadOlder() puts the older page first", async () => {
  const client = new FakeClient();
  client.history.set("t1", [
    { items: [message("r2", "user", "two"), message("r2", "assistant", "2")], nextCursor: "1" },
    { items: [message("r1", "user", "one"), message("r1", "assistant", "1")] },
  ]);
  const conversation = new Conversation(client, { threadId: "t1" });
  await conversation.load();
  assert.equal(conversation.hasOlder, true);
  assert.equal(await conversation.loadOlder(), true);
  assert.deepEqual(conversation.turns.map((t) => t.userText), ["one", "two"]);
  assert.equal(conversation.hasOlder, false);
  assert.equal(await conversation.loadOlder(), false);
  conversation.dispose();
});

Deno.test("Conversation.load() keeps what it shows when the server lost the thread", async () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  const run = client.remote("r1");
  run.push(event("r1", "agent_started", { chatId: "c1", text: "hello" }));
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
  run.lose(new RunLostError("gone with the server"));
  await settle();
  assert.equal(conversation.turns[0].status, "lost");
  assert.equal(conversation.turns[0].error, "gone with the server");
  assert.equal(conversation.turns[0].errorCode, "lost");
  conversation.cancel();
  assert.deepEqual(client.cancelled, []);
  conversation.dispose();
});

Deno.test("Conversation follows only its thread's runs, and stops after dispose()", () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  client.remote("rx", "other");
  const mine = client.remote("r1");
  mine.push(event("r1", "agent_started", { text: "mine" }));
  mine.push(event("r1", "agent_dreaming", { text: "?" })); // an unknown event: ignored
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.steps.length]), [["r1", 0]]);
  let changes = 0;
  conversation.onChange(() => changes++);
  conversation.dispose();
  mine.push(eventFrame(9, "agent_delta", { text: "x" }));
  client.remote("r2");
  assert.equal(changes, 0);
});

Deno.test("Conversation.cancel() cancels the run in flight", () => {
  const client = new FakeClient();
  const conversation = new Conversation(client, { threadId: "t1" });
  let cancelled = 0;
  const run = new TrackedRun({ local: false, runId: "r1", threadId: "t1" }, {
    cancel: () => cancelled++,
    approve() {},
  });
  client.followed.push(run);
  client.emit("run", run);
  conversation.cancel();
  assert.equal(cancelled, 1);
  conversation.dispose();
});

Deno.test("Conversation shows the history's ending over a followed run whose end has not arrived yet", async () => {
  const client = new FakeClient();
  const live = client.remote("r1");
  live.push(event("r1", "agent_started", { chatId: "c1", text: "hi" }));
  live.push(event("r1", "agent_delta", { text: "Hel" }));
  client.history.set("t1", [{
    items: [
      message("r1", "user", "hi", { runStatus: "completed", seq: 1 }),
      message("r1", "assistant", "Hello", { runStatus: "completed", seq: 5 }),
    ],
  }]);
  const conversation = new Conversation(client, { threadId: "t1" });
  await conversation.load();
  assert.deepEqual(
    conversation.turns.map((t) => [t.status, t.reply]),
    [["completed", "Hello"]],
    "the replay of its last events is still on its way",
  );
  assert.equal(conversation.busy, false);
  conversation.dispose();
});
