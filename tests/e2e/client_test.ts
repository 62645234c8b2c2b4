/**
 * The client library (src/client) against a real server built in this process
 * (`buildServer(loadConfig(env))` + `Deno.serve` on 127.0.0.1:0), over real sockets. A TCP
 * proxy in front of the server cuts connections at chosen moments; timers are injected where
 * a test must decide when the client reconnects, so nothing sleeps.
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { systemClock } from "../../src/_util/clock.ts";
import { MemoryEngine } from "../../src/bus/mod.ts";
import {
  AgentSocketClient,
  ClientClosedError,
  connect,
  FrameTooLargeError,
  HistoryRequestError,
  RunFailedError,
  RunLostError,
} from "../../src/client/mod.ts";
import type {
  ClientEventMap,
  ClientTimers,
  ConnectOptions,
  TimerHandle,
} from "../../src/client/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import type { EventFrame } from "../../src/protocol/mod.ts";
import { buildServer } from "../../src/server/build_server.ts";
import type { AgentsocketServer, BuildOptions } from "../../src/server/build_server.ts";
import { MemoryStore } from "../../src/store/mod.ts";
import type { ChatStore } from "../../src/store/mod.ts";
import { TestClient } from "../_helpers/test_client.ts";

const SECRET = "client-test-secret-of-at-least-32-bytes!!";
const WAIT_MS = 10_000;
const RUN_EVENTS = [
  "agent_started",
  "agent_thinking",
  "tool_executing",
  "tool_completed",
  "agent_completed",
];

// ---- an in-process server -------------------------------------------------------------------

class InProcessServer {
  readonly server: AgentsocketServer;
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  #abort = new AbortController();
  #http: Deno.HttpServer<Deno.NetAddr>;

  private constructor(server: AgentsocketServer) {
    this.server = server;
    this.#http = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: this.#abort.signal, onListen: () => {} },
      (request, info) => server.fetch(request, info),
    );
    this.port = this.#http.addr.port;
    this.url = `http://127.0.0.1:${this.port}`;
    this.wsUrl = `ws://127.0.0.1:${this.port}/ws`;
  }

  static async start(
    env: Record<string, string> = {},
    options: BuildOptions = {},
  ): Promise<InProcessServer> {
    const vars: Record<string, string> = {
      HOST: "127.0.0.1",
      PORT: "0",
      LOG_LEVEL: "silent",
      AGENT_STEP_DELAY_MS: "0",
      JWT_SECRET: SECRET,
      HEARTBEAT_SECONDS: "0",
      ...env,
    };
    const server = await buildServer(loadConfig((name) => vars[name]), options);
    await server.start();
    return new InProcessServer(server);
  }

  async token(userId: string, lifetimeSeconds = 3600): Promise<string> {
    return await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setExpirationTime(Math.floor(Date.now() / 1000) + lifetimeSeconds)
      .sign(new TextEncoder().encode(SECRET));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.close();
    this.#abort.abort();
    await this.#http.finished;
  }
}

/** A store shared by two servers: `close()` from either is ignored (the test closes it). */
function sharedStore(store: ChatStore): ChatStore {
  return new Proxy(store, {
    get(target, property) {
      if (property === "close") return () => Promise.resolve();
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

// ---- a TCP proxy that can cut every connection -----------------------------------------------

class TcpProxy {
  readonly port: number;
  target: number;
  #listener: Deno.Listener;
  #pairs = new Set<{ conns: Deno.Conn[]; done: Promise<unknown> }>();
  #accepting: Promise<void>;

  constructor(target: number) {
    this.target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept();
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Cuts every open connection (both sides see the TCP connection drop). */
  async cut(): Promise<void> {
    const pairs = [...this.#pairs];
    for (const pair of pairs) for (const conn of pair.conns) closeQuietly(conn);
    await Promise.all(pairs.map((pair) => pair.done));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    await this.cut();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) void this.#pipe(conn);
    } catch {
      // listener closed
    }
  }

  async #pipe(client: Deno.Conn): Promise<void> {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    } catch {
      closeQuietly(client);
      return;
    }
    const conns = [client, upstream];
    const done = Promise.allSettled([
      client.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(client.writable),
    ]).then(() => conns.forEach(closeQuietly));
    const pair = { conns, done };
    this.#pairs.add(pair);
    await done;
    this.#pairs.delete(pair);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

// ---- timers the test drives ---------------------------------------------------------------

/** Timers that fire only when the test says; `random()` is fixed. */
class ManualTimers implements ClientTimers {
  #now = Date.now();
  #next = 1;
  #pending = new Map<number, { at: number; ms: number; callback: () => void }>();
  random = () => 0.5;

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#pending.set(id, { at: this.#now + ms, ms, callback });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#pending.delete(handle as number);
  }

  now(): number {
    return this.#now;
  }

  /** Moves time on by `ms`, firing what falls due, in order. */
  advance(ms: number): void {
    this.#now += ms;
    for (;;) {
      const due = [...this.#pending].filter(([, t]) => t.at <= this.#now)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) return;
      this.#pending.delete(due[0]);
      due[1].callback();
    }
  }
}

// ---- waiting on the client's events -------------------------------------------------------------

/** Resolves with the first `type` event that `match` accepts, within WAIT_MS. */
function nextEvent<K extends keyof ClientEventMap>(
  client: AgentSocketClient,
  type: K,
  match: (detail: ClientEventMap[K]) => boolean = () => true,
): Promise<ClientEventMap[K]> {
  const { promise, resolve, reject } = Promise.withResolvers<ClientEventMap[K]>();
  const timer = setTimeout(() => {
    off();
    reject(new Error(`timed out waiting for "${type}"`));
  }, WAIT_MS);
  const off = client.on(type, (detail) => {
    if (!match(detail)) return;
    clearTimeout(timer);
    off();
    resolve(detail);
  });
  return promise;
}

/** Resolves, within WAIT_MS, once `promise` does. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function clientFor(url: string, options: Partial<ConnectOptions>): AgentSocketClient {
  return connect({ url, pingIntervalMs: 0, backoff: { initialDelayMs: 20 }, ...options });
}

function assertOneRun(events: readonly EventFrame[]): void {
  assert.deepEqual(events.map((e) => e.name), RUN_EVENTS);
  for (let i = 1; i < events.length; i++) assert.equal(events[i].seq, events[i - 1].seq + 1);
}

// ---- the tests ------------------------------------------------------------------------------------

Deno.test("connect() queues a chat sent before ready and follows its run to the reply", async () => {
  await using server = await InProcessServer.start();
  const token = await server.token("alice");
  const client = clientFor(server.wsUrl, { token });
  const states: string[] = [client.state];
  client.on("state", ({ to }) => states.push(to));
  const run = client.chat("what is 6*7"); // before ready: queued, never lost
  assert.equal(run.state, "sending");
  const events: EventFrame[] = [];
  for await (const event of run) events.push(event);
  assertOneRun(events);
  assert.match(await run.reply, /42/);
  assert.equal(run.state, "completed");
  // The demo agent does not stream: its whole reply is one piece, from the terminal event.
  const pieces = await Array.fromAsync(run.pieces());
  assert.equal(pieces.filter((p) => p.kind === "text").map((p) => p.text).join(""), run.text);
  assert.equal(run.text, await run.reply);
  assert.deepEqual(run.steps.map((s) => s.kind), ["thinking", "tool"]);
  assert.deepEqual(run.toolCalls.map((c) => [c.tool, c.status]), [["calculator", "completed"]]);
  assert.deepEqual(states, ["connecting", "ready"]);
  assert.equal(client.userId, "alice");
  const history = await client.listMessages(run.threadId!);
  assert.deepEqual(history?.items.map((m) => [m.role, m.runId]), [
    ["user", run.runId],
    ["assistant", run.runId],
  ]);
  assert.equal(await client.listMessages("no-such-thread"), null);
  await client.close();
  assert.equal(client.state, "closed");
  assert.throws(() => client.chat("late"), ClientClosedError);
});

Deno.test("a chat over the frame limit is refused locally, and the connection stays usable", async () => {
  await using server = await InProcessServer.start();
  const client = clientFor(server.wsUrl, { token: await server.token("olga") });
  await within(client.ready, "ready");
  assert.throws(() => client.chat("x".repeat(70_000)), (error: FrameTooLargeError) => {
    assert.equal(error.code, "frame_too_large");
    assert.equal(error.limit, 65_536);
    return true;
  });
  // Nothing was sent, so the server did not close 1009: the next chat goes through at once.
  const run = client.chat("what is 6*7");
  assert.match(await within(run.reply, "the reply"), /42/);
  assert.equal(client.state, "ready");
  await client.close();
});

Deno.test("ChatRun.approve() answers a tool's approval request, and the run goes on", async () => {
  await using server = await InProcessServer.start({ TOOLS_REQUIRE_APPROVAL: "calculator" });
  const client = clientFor(server.wsUrl, { token: await server.token("quinn") });
  const pending = nextEvent(client, "approvals", (list) => list.length > 0);
  const run = client.chat("what is 6*7");
  const [approval] = await pending;
  assert.equal(approval.run, run);
  assert.equal(approval.tool, "calculator");
  assert.deepEqual(run.toolCalls.map((c) => c.status), ["awaiting_approval"]);
  const decided = await within(run.approve(approval.toolCallId, true), "the decision");
  assert.deepEqual(decided, { approved: true, by: "user" });
  assert.match(await within(run.reply, "the reply"), /42/);
  assert.deepEqual(run.toolCalls.map((c) => [c.status, c.approval?.resolution?.approved]), [[
    "completed",
    true,
  ]]);
  assert.deepEqual(client.pendingApprovals, []);
  await client.close();
});

Deno.test("the thread helpers list, open, rename and delete the caller's threads", async () => {
  await using server = await InProcessServer.start();
  const client = clientFor(server.wsUrl, { token: await server.token("petra") });
  const run = client.chat("what is 6*7");
  await within(run.reply, "the reply");
  const threadId = run.threadId!;
  const conversation = await client.openThread(threadId);
  assert.deepEqual(conversation.turns.map((t) => [t.userText, t.status]), [[
    "what is 6*7",
    "completed",
  ]]);
  assert.match(conversation.turns[0].reply ?? "", /42/);
  conversation.dispose();
  const renamed = await client.renameThread(threadId, "Sums");
  assert.equal(renamed.title, "Sums");
  assert.deepEqual((await client.listThreads()).items.map((t) => [t.id, t.title]), [[
    threadId,
    "Sums",
  ]]);
  await client.deleteThread(threadId);
  assert.deepEqual((await client.listThreads()).items, []);
  assert.equal(await client.listMessages(threadId), null);
  await assert.rejects(
    () => client.renameThread(threadId, "gone"),
    (error: HistoryRequestError) => error.status === 404,
  );
  await client.close();
});

Deno.test("the client backs off exponentially, with jitter, while the server is unreachable", async () => {
  await using server = await InProcessServer.start();
  await using proxy = new TcpProxy(unusedPort());
  const timers = new ManualTimers();
  const client = clientFor(proxy.wsUrl, {
    token: await server.token("bob"),
    timers,
    backoff: { initialDelayMs: 100, maxDelayMs: 1000 },
  });
  const delays: number[] = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    const { code, retryInMs } = await nextEvent(client, "disconnected");
    assert.equal(code, 1006);
    delays.push(retryInMs!);
    if (attempt === 5) proxy.target = server.port; // the server is back
    timers.advance(retryInMs!);
  }
  // random() is 0.5: three quarters of a ceiling that doubles from 100 up to 1000.
  assert.deepEqual(delays, [75, 150, 300, 600, 750, 750]);
  const ready = await within(client.ready, "ready");
  assert.equal(ready.userId, "bob");
  assert.equal(client.state, "ready");
  // After a ready the backoff starts over.
  const lost = nextEvent(client, "disconnected");
  await proxy.cut();
  assert.equal((await lost).retryInMs, 75);
  await client.close();
});

Deno.test("a run cut mid-way resumes: every event once, in seq order", async () => {
  await using server = await InProcessServer.start({ AGENT_STEP_DELAY_MS: "30" });
  await using proxy = new TcpProxy(server.port);
  const token = await server.token("carol");
  const timers = new ManualTimers();
  const client = clientFor(proxy.wsUrl, { token, timers });
  const seen: number[] = [];
  client.on("event", (event) => seen.push(event.seq));
  await within(client.ready, "ready");
  // Another connection of the same user watches the run without being cut.
  const watcher = TestClient.open(server.wsUrl);
  await watcher.hello(token);

  const run = client.chat("what is 6*7");
  await nextEvent(client, "event", (e) => e.name === "agent_thinking");
  const lost = nextEvent(client, "disconnected");
  await proxy.cut();
  const { retryInMs } = await lost;
  await watcher.eventsUntil((e) => e.name === "agent_completed"); // finished while away
  const resumed = nextEvent(client, "ready");
  timers.advance(retryInMs!);
  assert.equal((await resumed).resumed, true);
  assert.match(await within(run.reply, "the reply"), /42/);
  assertOneRun(run.events);
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.equal(client.lastSeq, 5);
  await watcher.close();
  await client.close();
});

Deno.test("a chat cut before its ack is resent with the same id: one run, not two", async () => {
  const gate = Promise.withResolvers<void>();
  const arrived = Promise.withResolvers<void>();
  const resent = Promise.withResolvers<void>();
  const outcomes: string[] = [];
  let beginChats = 0;
  const memory = new MemoryStore({ clock: systemClock });
  const store = new Proxy(memory, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property !== "beginChat") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: Parameters<ChatStore["beginChat"]>) => {
        const call = ++beginChats;
        if (call === 1) {
          arrived.resolve();
          await gate.promise; // held until the test has cut the connection
        }
        const result = await target.beginChat(...args);
        outcomes.push(result.kind);
        if (call === 2) resent.resolve();
        return result;
      };
    },
  });
  await using server = await InProcessServer.start({}, { store });
  await using proxy = new TcpProxy(server.port);
  const client = clientFor(proxy.wsUrl, { token: await server.token("dave") });
  const run = client.chat("what is 6*7");
  await within(arrived.promise, "the chat to reach the store");
  const lost = nextEvent(client, "disconnected");
  await proxy.cut();
  await lost;
  gate.resolve(); // the server stores the chat and starts the run; its ack has no socket
  assert.match(await within(run.reply, "the reply"), /42/);
  await within(resent.promise, "the chat to be sent again");
  assert.deepEqual(outcomes.toSorted(), ["duplicate", "started"], "one run started, not two");
  assertOneRun(run.events);
  const threads = await client.listThreads();
  assert.equal(threads.items.length, 1, "one thread");
  const history = await client.listMessages(threads.items[0].id);
  assert.deepEqual(history?.items.map((m) => m.role), ["user", "assistant"], "one run");
  await client.close();
});

Deno.test("a close with 4401 fetches a fresh token once, and stops when that fails too", async (t) => {
  await using server = await InProcessServer.start();
  await t.step("a stale token is replaced by getToken", async () => {
    const tokens = ["not-a-valid-token", await server.token("erin")];
    let calls = 0;
    const client = clientFor(server.wsUrl, { getToken: () => tokens[calls++] });
    const ready = await within(client.ready, "ready");
    assert.equal(ready.userId, "erin");
    assert.equal(calls, 2);
    await client.close();
  });
  await t.step("a second 4401 in a row closes the client with a clear error", async () => {
    let calls = 0;
    const client = clientFor(server.wsUrl, {
      getToken: () => {
        calls++;
        return "still-not-valid";
      },
    });
    const closed = nextEvent(client, "state", ({ to }) => to === "closed");
    await assert.rejects(() => client.ready, (error: ClientClosedError) => {
      assert.equal(error.code, 4401);
      assert.match(error.message, /4401.*rejected the token/);
      return true;
    });
    await closed;
    assert.equal(calls, 2);
    await client.close();
  });
});

Deno.test("the token is refreshed before exp with a refresh frame", async () => {
  await using server = await InProcessServer.start();
  const timers = new ManualTimers();
  const lifetimes = [120, 3600];
  let calls = 0;
  const client = clientFor(server.wsUrl, {
    getToken: () => server.token("frank", lifetimes[calls++]),
    timers,
    refreshBeforeExpiryMs: 60_000,
  });
  await within(client.ready, "ready");
  const refreshed = nextEvent(client, "refreshed");
  timers.advance(61_000); // 60 s before the first token's exp
  const { exp } = await refreshed;
  assert.equal(calls, 2);
  assert.ok(exp > Date.now() / 1000 + 3000, `exp ${exp} is the second token's`);
  await client.close();
});

Deno.test("resumed:false settles every run: from the history, or lost with a clear error", async () => {
  const memory = new MemoryStore({ clock: systemClock });
  const timers = new ManualTimers();
  const slow = { AGENT_STEP_DELAY_MS: "20" };
  await using first = await InProcessServer.start(slow, { store: sharedStore(memory) });
  await using proxy = new TcpProxy(first.port);
  const token = await first.token("gina");
  const client = clientFor(proxy.wsUrl, { token, timers });
  await within(client.ready, "ready");
  const resets: boolean[] = [];
  client.on("reset", ({ epochChanged }) => resets.push(epochChanged));

  // A run that ends while the client is away resolves from the history...
  const run = client.chat("what is 6*7");
  await nextEvent(client, "event", (e) => e.name === "agent_started");
  let lost = nextEvent(client, "disconnected");
  await proxy.cut();
  let { retryInMs } = await lost;
  await waitForReply(first, token, run.threadId!);
  // ...of a server that shares the store but not the event log (a new epoch).
  await using second = await InProcessServer.start(slow, {
    store: sharedStore(memory),
    engine: new MemoryEngine({ clock: systemClock, retention: { count: 100, seconds: 60 } }),
  });
  proxy.target = second.port;
  let ready = nextEvent(client, "ready");
  timers.advance(retryInMs!);
  assert.equal((await ready).resumed, false);
  assert.match(await within(run.reply, "the reply from history"), /42/);
  assert.deepEqual(resets, [true]);
  assert.equal(run.events.length, 1, "only agent_started was seen live");

  // A run the next server does not know at all (a store of its own) rejects: lost.
  const doomed = client.chat("what is 1+1");
  await nextEvent(client, "event", (e) => e.name === "agent_started");
  lost = nextEvent(client, "disconnected");
  await proxy.cut();
  ({ retryInMs } = await lost);
  await using third = await InProcessServer.start();
  proxy.target = third.port;
  ready = nextEvent(client, "ready");
  timers.advance(retryInMs!);
  assert.equal((await ready).resumed, false);
  await assert.rejects(() => within(doomed.reply, "the lost run"), RunLostError);
  assert.equal((await doomed.settled).state, "lost");
  assert.deepEqual(resets, [true, true]);
  await client.close();
  await proxy.cut();
  await memory.close();
});

Deno.test("a client that connects mid-run follows the active run from its agent_started", async () => {
  await using server = await InProcessServer.start({ AGENT_STEP_DELAY_MS: "30" });
  const token = await server.token("hana");
  const starter = clientFor(server.wsUrl, { token });
  const started = starter.chat("what is 6*7");
  await nextEvent(starter, "event", (e) => e.name === "agent_thinking");
  const late = clientFor(server.wsUrl, { token });
  const run = await nextEvent(late, "run");
  const ready = await within(late.ready, "ready");
  assert.equal(ready.resumed, false);
  assert.deepEqual(ready.activeRuns.map((r) => r.runId), [started.runId]);
  assert.equal(run.local, false);
  assert.equal(run.userText, "what is 6*7");
  assert.match(await within(run.reply, "the reply"), /42/);
  assertOneRun(run.events);
  assert.equal(late.lastSeq, 5);
  await Promise.all([starter.close(), late.close()]);
});

Deno.test("after resumed:false, a run cancelled while away rejects with RunFailedError", async () => {
  const memory = new MemoryStore({ clock: systemClock });
  const timers = new ManualTimers();
  await using first = await InProcessServer.start({ AGENT_STEP_DELAY_MS: "50" }, {
    store: sharedStore(memory),
  });
  await using proxy = new TcpProxy(first.port);
  const token = await first.token("ivan");
  const client = clientFor(proxy.wsUrl, { token, timers });
  const run = client.chat("what is 6*7");
  await nextEvent(client, "event", (e) => e.name === "agent_started");
  const lost = nextEvent(client, "disconnected");
  await proxy.cut();
  const { retryInMs } = await lost;
  // Another connection cancels the run while this client is away.
  const other = TestClient.open(first.wsUrl);
  await other.hello(token);
  other.send({ type: "cancel", runId: run.runId });
  await other.eventsUntil((e) => e.name === "agent_cancelled");
  await other.close();
  // The next server shares the store, not the log: the history has no reply, so the client
  // asks again with the same chat id and learns the run's status from the duplicate ack.
  await using second = await InProcessServer.start({}, {
    store: sharedStore(memory),
    engine: new MemoryEngine({ clock: systemClock, retention: { count: 100, seconds: 60 } }),
  });
  proxy.target = second.port;
  timers.advance(retryInMs!);
  await assert.rejects(() => within(run.reply, "the run's outcome"), (error: RunFailedError) => {
    assert.equal(error.name, "RunFailedError");
    assert.equal(error.status, "cancelled");
    return true;
  });
  assert.equal(run.state, "cancelled");
  const threads = await client.listThreads();
  assert.equal(threads.items.length, 1, "asking again started nothing");
  await client.close();
  await proxy.cut();
  await memory.close();
});

/** Resolves once the thread's history holds an assistant message (read over REST). */
async function waitForReply(server: InProcessServer, token: string, threadId: string) {
  const watcher = TestClient.open(server.wsUrl);
  await watcher.hello(token);
  const response = await fetch(`${server.url}/api/threads/${threadId}/messages`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = await response.json() as { messages: { role: string }[] };
  if (!body.messages.some((m) => m.role === "assistant")) {
    await watcher.eventsUntil((e) => e.name === "agent_completed");
  }
  await watcher.close();
}

function unusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("a close with 4400, 1008 or 1009 stops the client for good, with the code", async (t) => {
  for (const code of [4400, 1008, 1009]) {
    await t.step(String(code), async () => {
      let upgrades = 0;
      // A server that closes every connection with `code` as soon as it says hello.
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
        upgrades++;
        const { socket, response } = Deno.upgradeWebSocket(request);
        socket.onmessage = () => socket.close(code, "refused");
        return response;
      });
      try {
        const client = clientFor(`ws://127.0.0.1:${server.addr.port}/ws`, { token: "any" });
        const closed = nextEvent(client, "state", ({ to }) => to === "closed");
        await assert.rejects(() => client.ready, (error: ClientClosedError) => {
          assert.equal(error.code, code);
          return true;
        });
        await closed;
        assert.equal(client.state, "closed");
        assert.equal(upgrades, 1, "no reconnect after a terminal close");
        await client.close();
      } finally {
        await server.shutdown();
      }
    });
  }
});
