/**
 * The client as a whole, through its seams: sockets the test drives as the server would,
 * timers it advances, a fetch that answers from a table. No network, no sleeps.
 */
import assert from "node:assert/strict";
import {
  AgentSocketClient,
  ApprovalRefusedError,
  ChatRefusedError,
  ClientClosedError,
  connect,
  FrameTooLargeError,
  RunFailedError,
} from "../../../src/client/mod.ts";
import type {
  ClientEventMap,
  ConnectOptions,
  HistoryMessage,
  PendingApproval,
  RunPiece,
} from "../../../src/client/mod.ts";
import {
  eventFrame,
  FakeFetch,
  FakeSockets,
  json,
  jwtWithExp,
  ManualTimers,
  readyFrame,
  settle,
} from "./_fakes.ts";
import type { FakeSocket } from "./_fakes.ts";

interface Setup {
  readonly client: AgentSocketClient;
  readonly sockets: FakeSockets;
  readonly timers: ManualTimers;
  readonly fetch: FakeFetch;
  /** Every client event, by name, in order. */
  readonly seen: { [K in keyof ClientEventMap]?: ClientEventMap[K][] };
  [Symbol.asyncDispose](): Promise<void>;
}

function setup(
  options: Partial<ConnectOptions> = {},
  history: (path: string, method: string) => Response = () => json({ messages: [] }),
): Setup {
  const sockets = new FakeSockets();
  const timers = new ManualTimers();
  const fetch = new FakeFetch((call) => history(call.path, call.method));
  const client = connect({
    url: "ws://chat.test/ws",
    token: "tok",
    socketFactory: sockets.factory,
    timers,
    fetch: fetch.fetch,
    pingIntervalMs: 0,
    ...options,
  });
  const seen: Setup["seen"] = {};
  for (
    const name of [
      "state",
      "ready",
      "disconnected",
      "event",
      "run",
      "reset",
      "approvals",
      "error",
    ] as const
  ) {
    client.on(name, (detail) => ((seen[name] ??= []) as unknown[]).push(detail));
  }
  return {
    client,
    sockets,
    timers,
    fetch,
    seen,
    async [Symbol.asyncDispose]() {
      await client.close();
    },
  };
}

/** Connects a fresh client: the first socket, `hello`, `ready`. */
async function connected(
  options: Partial<ConnectOptions> = {},
  history?: (path: string, method: string) => Response,
): Promise<Setup & { socket: FakeSocket }> {
  const s = setup(options, history);
  const socket = await s.sockets.next();
  await socket.handshake();
  await s.client.ready;
  return { ...s, socket };
}

/** Drops the connection and lets the client reconnect: the next socket. */
async function reconnect(s: Setup, socket: FakeSocket, code = 1006): Promise<FakeSocket> {
  socket.drop(code);
  const { retryInMs } = s.seen.disconnected!.at(-1)!;
  s.timers.advance(retryInMs!);
  return await s.sockets.next();
}

function piecesOf(run: { pieces(): AsyncIterableIterator<RunPiece> }): Promise<RunPiece[]> {
  return Array.fromAsync(run.pieces());
}

// ---- handshake and transport ----------------------------------------------------------------

Deno.test("connect() says hello with the token, then resumes from the last seq after a cut", async () => {
  await using s = setup();
  const first = await s.sockets.next();
  assert.equal(first.url.href, "ws://chat.test/ws");
  assert.deepEqual(first.protocols, ["agentsocket.v1"]);
  assert.deepEqual(await first.handshake({ epoch: "e1", seq: 4 }), { type: "hello", token: "tok" });
  first.receive(eventFrame(5, "agent_started", { chatId: "x", text: "hi" }));
  const second = await reconnect(s, first);
  second.open();
  assert.deepEqual(await second.next("hello"), {
    type: "hello",
    token: "tok",
    resume: { epoch: "e1", after: 5 },
  });
  assert.deepEqual(s.seen.state?.map((c) => c.to), ["ready", "reconnecting"]);
});

Deno.test("AgentSocketClient reconnects by the close policy: at once on 1012, with backoff on 1013 and 1006", async () => {
  await using s = await connected({ backoff: { initialDelayMs: 100, maxDelayMs: 1000 } });
  s.socket.drop(1012);
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 0, "draining: go elsewhere at once");
  s.timers.advance(0);
  const again = await s.sockets.next();
  again.drop(1012); // the same draining server: back off from here
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 75);
  s.timers.advance(75);
  (await s.sockets.next()).drop(1013);
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 150);
  s.timers.advance(150);
  (await s.sockets.next()).drop(1006);
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 300);
  s.timers.advance(300);
  await (await s.sockets.next()).handshake();
  (s.sockets.sockets.at(-1)!).drop(1013);
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 75, "a ready starts the backoff over");
});

Deno.test("AgentSocketClient stops for good on a close whose policy is stop", async (t) => {
  for (const code of [1000, 1008, 1009, 4400]) {
    await t.step(String(code), async () => {
      await using s = await connected();
      s.socket.drop(code, "refused");
      assert.equal(s.client.state, "closed");
      assert.ok(s.client.closedError instanceof ClientClosedError);
      assert.equal((s.client.closedError as ClientClosedError).code, code);
      assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, undefined);
      s.timers.advance(60_000);
      await settle();
      assert.equal(s.sockets.count, 1, "no reconnect");
    });
  }
});

Deno.test("AgentSocketClient asks getToken again after 4401, once, and stops on a second 4401", async () => {
  const tokens = ["a", "b", "c"];
  await using s = setup({ token: undefined, getToken: () => tokens.shift()! });
  const first = await s.sockets.next();
  first.open();
  assert.equal((await first.next("hello")).token, "a");
  first.drop(4401);
  assert.equal(s.seen.disconnected?.at(-1)?.retryInMs, 0);
  s.timers.advance(0);
  const second = await s.sockets.next();
  second.open();
  assert.equal((await second.next("hello")).token, "b");
  second.drop(4401);
  assert.equal(s.client.state, "closed");
  await assert.rejects(() => s.client.ready, /4401.*rejected the token/);
});

Deno.test("AgentSocketClient refreshes the token before exp and adopts it once refreshed", async () => {
  const now = Date.UTC(2026, 0, 1) / 1000;
  const tokens = [jwtWithExp(now + 120), jwtWithExp(now + 3600)];
  await using s = setup({
    token: undefined,
    getToken: () => tokens.shift()!,
    refreshBeforeExpiryMs: 60_000,
  });
  const socket = await s.sockets.next();
  await socket.handshake();
  s.timers.advance(59_000);
  await settle();
  assert.deepEqual(socket.unread(), [], "not yet");
  s.timers.advance(1_000);
  const refresh = await socket.next("refresh");
  assert.equal(refresh.token, jwtWithExp(now + 3600));
  socket.receive({ type: "refreshed", exp: now + 3600 });
  const next = await reconnect(s, socket);
  next.open();
  assert.equal((await next.next("hello")).token, jwtWithExp(now + 3600));
});

Deno.test("AgentSocketClient drops a connection whose ping goes unanswered, and reconnects", async () => {
  await using s = await connected({ pingIntervalMs: 20_000, pongTimeoutMs: 10_000 });
  s.timers.advance(20_000);
  await s.socket.next("ping");
  s.socket.receive({ type: "pong" });
  s.timers.advance(20_000);
  await s.socket.next("ping");
  s.timers.advance(10_000); // no pong
  assert.deepEqual(s.socket.closedByClient, { code: 4000, reason: "No pong" });
  assert.equal(s.client.state, "reconnecting");
  assert.equal(s.seen.disconnected?.at(-1)?.code, 1006);
});

// ---- runs and their replies -------------------------------------------------------------------

Deno.test("AgentSocketClient.chat() queues a chat until ready and streams its reply piece by piece", async () => {
  await using s = setup();
  const run = s.client.chat("hi", { id: "c1" });
  assert.equal(run.state, "sending");
  const socket = await s.sockets.next();
  await socket.handshake();
  assert.deepEqual(await socket.next("chat"), { type: "chat", id: "c1", text: "hi" });
  socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  assert.equal((await run.accepted).runId, "r1");
  const pieces = piecesOf(run);
  socket.receive(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  socket.receive(eventFrame(2, "agent_thinking", { text: "hmm" }));
  socket.receive(eventFrame(3, "agent_delta", { text: "Hel" }));
  assert.equal(run.text, "Hel", "the reply so far");
  socket.receive(eventFrame(4, "agent_delta", { text: "lo" }));
  socket.receive(eventFrame(5, "agent_completed", { text: "Hello" }));
  assert.deepEqual((await pieces).map((p) => [p.kind, p.text]), [
    ["reasoning", "hmm"],
    ["text", "Hel"],
    ["text", "lo"],
  ]);
  assert.equal(await run.reply, "Hello");
  assert.equal(run.reasoning, "hmm");
  assert.deepEqual(s.seen.run, [run]);
  assert.deepEqual(s.seen.event?.map((e) => e.seq), [1, 2, 3, 4, 5]);
});

Deno.test("AgentSocketClient shows every piece once when a streamed reply resumes mid-way", async () => {
  await using s = await connected();
  const run = s.client.chat("hi", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  s.socket.receive(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  s.socket.receive(eventFrame(2, "agent_delta", { text: "one " }));
  s.socket.receive(eventFrame(3, "agent_delta", { text: "two " }));
  const socket = await reconnect(s, s.socket);
  socket.open();
  assert.deepEqual((await socket.next("hello")).resume, { epoch: "e1", after: 3 });
  socket.receive(readyFrame({ seq: 5, resumed: true }));
  // The server replays from `after`; a frame that repeats one already seen changes nothing.
  socket.receive(eventFrame(3, "agent_delta", { text: "two " }));
  socket.receive(eventFrame(4, "agent_delta", { text: "three" }));
  socket.receive(eventFrame(5, "agent_completed", { text: "one two three" }));
  assert.deepEqual((await piecesOf(run)).map((p) => p.text), ["one ", "two ", "three"]);
  assert.equal(await run.reply, "one two three");
  assert.equal(socket.unread().filter((f) => f.type === "chat").length, 0, "acked: not resent");
});

Deno.test("AgentSocketClient follows another tab's run replayed after resumed:false, ending the replay with a pong", async () => {
  await using s = await connected();
  const socket = await reconnect(s, s.socket);
  socket.open();
  await socket.next("hello");
  socket.receive(readyFrame({
    seq: 9,
    resumed: false,
    activeRuns: [{ runId: "r2", threadId: "t2", startSeq: 6 }],
  }));
  assert.equal(s.seen.reset?.length, 1);
  await socket.next("ping"); // the replay ends when its pong comes back
  socket.receive(eventFrame(6, "agent_started", { chatId: "other", text: "from the phone" }, {
    runId: "r2",
    threadId: "t2",
  }));
  socket.receive(
    eventFrame(8, "agent_delta", { text: "partial" }, { runId: "r2", threadId: "t2" }),
  );
  socket.receive({ type: "pong" });
  assert.equal(s.client.lastSeq, 9, "past the events of runs that ended");
  const [run] = s.seen.run!;
  assert.equal(run.local, false);
  assert.equal(run.userText, "from the phone");
  assert.equal(run.text, "partial");
  assert.deepEqual(s.client.runs, [run]);
  socket.receive(eventFrame(10, "agent_completed", { text: "partial reply" }, {
    runId: "r2",
    threadId: "t2",
  }));
  assert.equal(await run.reply, "partial reply");
});

Deno.test("AgentSocketClient settles a run from the history after resumed:false, with its partial text and code", async () => {
  const stored: HistoryMessage[] = [
    { id: "m1", role: "user", text: "hi", runId: "r1", seq: 1, createdAt: "", runStatus: "failed" },
    {
      id: "m2",
      role: "assistant",
      text: "I was say",
      runId: "r1",
      seq: 4,
      createdAt: "",
      runStatus: "failed",
      error: { code: "provider_unavailable", message: "The model is unreachable" },
    },
  ];
  await using s = await connected({}, (path) => {
    assert.equal(path, "/api/threads/t1/messages?limit=200");
    return json({ messages: stored });
  });
  const run = s.client.chat("hi", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  s.socket.receive(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  s.socket.receive(eventFrame(2, "agent_delta", { text: "I was" }));
  const socket = await reconnect(s, s.socket);
  await socket.handshake({ epoch: "e2", seq: 7 }); // another log: nothing to resume
  const error = await run.reply.then(() => undefined, (e) => e);
  assert.ok(error instanceof RunFailedError);
  assert.equal(error.code, "provider_unavailable");
  assert.equal(error.text, "I was say");
  assert.equal(run.state, "failed");
  assert.equal(run.text, "I was say");
  assert.deepEqual((await piecesOf(run)).map((p) => p.text), ["I was", " say"]);
  assert.equal(s.fetch.calls[0].authorization, "Bearer tok");
});

Deno.test("AgentSocketClient resends an unacknowledged chat after a cut, and refuses it after three cuts", async () => {
  await using s = await connected();
  const run = s.client.chat("hi", { id: "c1" });
  let socket = s.socket;
  for (let attempt = 1; attempt <= 3; attempt++) {
    assert.equal((await socket.next("chat")).id, "c1", `attempt ${attempt}`);
    socket = await reconnect(s, socket); // cut before the ack (a 1009 lost on its way)
    if (attempt < 3) await socket.handshake();
  }
  assert.equal(run.state, "refused");
  await assert.rejects(() => run.reply, (error: ChatRefusedError) => {
    assert.equal(error.code, "undeliverable");
    return true;
  });
  await socket.handshake();
  await settle();
  assert.deepEqual(socket.unread().filter((f) => f.type === "chat"), [], "never sent again");
});

Deno.test("AgentSocketClient.chat() refuses a frame over the limit locally and sends nothing", async (t) => {
  await t.step("over the default 65536 before any ready", async () => {
    await using s = setup();
    assert.throws(() => s.client.chat("x".repeat(65_536)), (error: FrameTooLargeError) => {
      assert.ok(error instanceof ChatRefusedError);
      assert.equal(error.code, "frame_too_large");
      assert.equal(error.limit, 65_536);
      return true;
    });
    assert.deepEqual(s.client.runs, []);
  });
  await t.step("over the limit ready announced", async () => {
    await using s = setup();
    await (await s.sockets.next()).handshake({ maxFrameBytes: 1024 });
    assert.equal(s.client.maxFrameBytes, 1024);
    assert.throws(() => s.client.chat("x".repeat(1000)), FrameTooLargeError);
    s.client.chat("x".repeat(900)); // fits
  });
  await t.step("a queued chat over the limit of the server that answers", async () => {
    await using s = setup();
    const run = s.client.chat("x".repeat(2000));
    const socket = await s.sockets.next();
    await socket.handshake({ maxFrameBytes: 1024 });
    await assert.rejects(() => run.reply, FrameTooLargeError);
    await settle();
    assert.deepEqual(socket.unread().filter((f) => f.type === "chat"), []);
  });
});

Deno.test("AgentSocketClient.chat() retries rate_limited, then reports it typed; too_many_runs at once", async () => {
  await using s = await connected({ maxChatRetries: 1 });
  const busy = s.client.chat("one", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "error", code: "too_many_runs", message: "4 runs", ref: "c1" });
  await assert.rejects(
    () => busy.reply,
    (error: ChatRefusedError) => error.code === "too_many_runs",
  );
  const limited = s.client.chat("two", { id: "c2" });
  await s.socket.next("chat");
  s.socket.receive({ type: "error", code: "rate_limited", message: "slow down", ref: "c2" });
  s.timers.advance(s.timers.pendingDelays.at(-1)!);
  assert.equal((await s.socket.next("chat")).id, "c2", "retried once");
  s.socket.receive({ type: "error", code: "rate_limited", message: "slow down", ref: "c2" });
  await assert.rejects(
    () => limited.reply,
    (error: ChatRefusedError) => error.code === "rate_limited",
  );
});

Deno.test("AgentSocketClient.chat() carries a host's refusal code from a beforeRun hook", async () => {
  await using s = await connected();
  const run = s.client.chat("refund everything", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({
    type: "error",
    code: "refused",
    refusal: "budget_exceeded",
    message: "Monthly budget used up",
    ref: "c1",
  });
  await assert.rejects(
    () => run.reply,
    (error: ChatRefusedError) =>
      error.code === "refused" && error.refusal === "budget_exceeded" &&
      error.message.includes("Monthly budget used up"),
  );
});

Deno.test("AgentSocketClient reports a run's failure with its typed code and retryAfterMs", async () => {
  await using s = await connected();
  const run = s.client.chat("hi", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  s.socket.receive(eventFrame(2, "agent_failed", {
    text: "",
    error: { code: "rate_limited", message: "429", retryAfterMs: 1500 },
  }));
  const error = await run.reply.then(() => undefined, (e) => e);
  assert.ok(error instanceof RunFailedError);
  assert.deepEqual([error.status, error.code, error.retryAfterMs], [
    "failed",
    "rate_limited",
    1500,
  ]);
  assert.equal(run.runId, "r1", "bound by its events without an ack");
});

// ---- approvals ------------------------------------------------------------------------------

Deno.test("ChatRun.approve() sends approve, resends it after a reconnect, and resolves with the decision", async () => {
  await using s = await connected();
  const run = s.client.chat("hi", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  s.socket.receive(eventFrame(1, "agent_started", { chatId: "c1", text: "hi" }));
  s.socket.receive(eventFrame(2, "tool_approval_requested", {
    toolCallId: "tc1",
    tool: "calculator",
    input: { expression: "1+1" },
    expiresAt: "2026-01-01T00:05:00.000Z",
  }));
  const shown = s.seen.approvals!.at(-1)! as readonly PendingApproval[];
  assert.deepEqual(shown.map((a) => [a.runId, a.toolCallId, a.tool]), [[
    "r1",
    "tc1",
    "calculator",
  ]]);
  assert.equal(shown[0].run, run);
  const decided = run.approve("tc1", true, "looks fine");
  assert.deepEqual(await s.socket.next("approve"), {
    type: "approve",
    runId: "r1",
    toolCallId: "tc1",
    approved: true,
    reason: "looks fine",
  });
  const socket = await reconnect(s, s.socket);
  await socket.handshake({ resumed: true, seq: 2 });
  assert.equal((await socket.next("approve")).toolCallId, "tc1", "resent: the first answer wins");
  socket.receive(eventFrame(3, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "calculator",
    approved: true,
    by: "user",
    reason: "looks fine",
  }));
  assert.deepEqual(await decided, { approved: true, by: "user", reason: "looks fine" });
  assert.deepEqual(s.seen.approvals!.at(-1), []);
  assert.equal(run.toolCalls[0].status, "approved");
  const third = await reconnect(s, socket);
  await third.handshake({ resumed: true, seq: 3 });
  await settle();
  assert.deepEqual(third.unread().filter((f) => f.type === "approve"), [], "decided: not resent");
});

Deno.test("ChatRun.approve() resolves with another tab's decision, and rejects when the tool call is unknown", async () => {
  await using s = await connected();
  const run = s.client.chat("hi", { id: "c1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  const lost = run.approve("tc1", true);
  await s.socket.next("approve");
  s.socket.receive({ type: "error", code: "already_resolved", message: "denied", ref: "tc1" });
  s.socket.receive(eventFrame(1, "tool_approval_resolved", {
    toolCallId: "tc1",
    tool: "echo",
    approved: false,
    by: "user",
  }));
  assert.deepEqual(await lost, { approved: false, by: "user" });
  const unknown = run.approve("tc9", false);
  await s.socket.next("approve");
  s.socket.receive({ type: "error", code: "not_found", message: "no such call", ref: "tc9" });
  await assert.rejects(() => unknown, (error: ApprovalRefusedError) => error.code === "not_found");
  assert.deepEqual(s.seen.error ?? [], [], "errors that answer an approve are not re-emitted");
});

// ---- threads --------------------------------------------------------------------------------

Deno.test("AgentSocketClient thread helpers list, rename and delete over REST with the token", async () => {
  const thread = { id: "t1", title: "New", createdAt: "", updatedAt: "" };
  await using s = await connected({}, (path, method) => {
    if (method === "GET" && path === "/api/threads?limit=2") {
      return json({ threads: [thread], nextCursor: "older" });
    }
    if (method === "PATCH" && path === "/api/threads/t1") return json({ ...thread, title: "Sums" });
    if (method === "DELETE" && path === "/api/threads/t1") {
      return new Response(null, { status: 204 });
    }
    return json({ error: { code: "not_found", message: "No such thread" } }, 404);
  });
  assert.deepEqual(await s.client.listThreads({ limit: 2 }), {
    items: [thread],
    nextCursor: "older",
  });
  assert.equal((await s.client.renameThread("t1", "Sums")).title, "Sums");
  assert.deepEqual(s.fetch.calls[1].body, { title: "Sums" });
  await assert.rejects(() => s.client.renameThread("t1", ""), RangeError);
  await assert.rejects(
    () => s.client.renameThread("gone", "x"),
    (error: { status: number; code: string }) => {
      assert.deepEqual([error.status, error.code], [404, "not_found"]);
      return true;
    },
  );
  const run = s.client.chat("hi", { id: "c1", threadId: "t1" });
  await s.socket.next("chat");
  s.socket.receive({ type: "ack", id: "c1", threadId: "t1", runId: "r1" });
  await s.client.deleteThread("t1");
  assert.equal(run.state, "cancelled", "its run in flight was cancelled with it");
  assert.ok(s.fetch.calls.every((c) => c.authorization === "Bearer tok"));
});

Deno.test("AgentSocketClient.openThread() loads the thread and keeps a followed reply live", async () => {
  await using s = await connected({}, () =>
    json({
      messages: [
        {
          id: "m1",
          role: "user",
          text: "hi",
          runId: "r1",
          seq: 1,
          createdAt: "",
          runStatus: "running",
        },
      ],
    }));
  s.socket.receive(eventFrame(1, "agent_started", { chatId: "x", text: "hi" }));
  s.socket.receive(eventFrame(2, "agent_delta", { text: "So" }));
  const conversation = await s.client.openThread("t1");
  assert.deepEqual(conversation.turns.map((t) => [t.runId, t.status, t.reply]), [[
    "r1",
    "running",
    "So",
  ]]);
  s.socket.receive(eventFrame(3, "agent_delta", { text: " far" }));
  assert.equal(conversation.turns[0].reply, "So far");
  conversation.dispose();
});

Deno.test("AgentSocketClient.close() rejects what waits and closes its socket", async () => {
  const s = await connected();
  const run = s.client.chat("hi");
  await s.client.close();
  assert.equal(s.client.state, "closed");
  assert.deepEqual(s.socket.closedByClient, { code: 1000, reason: "Client closed" });
  await assert.rejects(() => run.reply, ClientClosedError);
  assert.throws(() => s.client.chat("late"), ClientClosedError);
  await assert.rejects(() => s.client.whenReady(), ClientClosedError);
  assert.deepEqual(s.timers.pendingDelays, [], "no timer left");
});
