import assert from "node:assert/strict";
import { TimerGroup } from "../../../src/client/timer_group.ts";
import { TokenSource } from "../../../src/client/token_source.ts";
import { Transport } from "../../../src/client/transport.ts";
import type { TransportHandlers } from "../../../src/client/transport.ts";
import { DEFAULT_BACKOFF } from "../../../src/client/mod.ts";
import { FakeSockets, ManualTimers, readyFrame, settle } from "./_fakes.ts";

function setup(resume = () => ({ epoch: "e1", after: 3 })) {
  const sockets = new FakeSockets();
  const timers = new ManualTimers();
  const group = new TimerGroup(timers);
  const calls: string[] = [];
  const frames: unknown[] = [];
  const handlers: TransportHandlers = {
    resumePosition: resume,
    beforeReady: () => calls.push(`beforeReady:${transport.state}`),
    state: ({ from, to }) => calls.push(`state:${from}>${to}`),
    ready: () => calls.push(`ready:${transport.state}`),
    frame: (frame) => frames.push(frame),
    disconnected: ({ code, retryInMs }) => calls.push(`disconnected:${code}:${retryInMs}`),
    closed: () => calls.push("closed"),
  };
  const tokens = new TokenSource({
    token: "tok",
    refreshBeforeExpiryMs: 60_000,
    timers: group,
    channel: {
      isReady: () => transport.state === "ready",
      sendRefresh: (token) => transport.send({ type: "refresh", token }),
    },
  });
  const transport: Transport = new Transport({
    url: new URL("ws://chat.test/ws"),
    socketFactory: sockets.factory,
    tokens,
    timers: group,
    backoff: { ...DEFAULT_BACKOFF },
    pingIntervalMs: 0,
    pongTimeoutMs: 10_000,
    handlers,
  });
  transport.start();
  return { transport, sockets, timers, calls, frames };
}

Deno.test("Transport.send() sends nothing before ready, and ready is handled before, during, after the state change", async () => {
  const { transport, sockets, calls, frames } = setup();
  const socket = await sockets.next();
  socket.open();
  assert.deepEqual(await socket.next(), {
    type: "hello",
    token: "tok",
    resume: { epoch: "e1", after: 3 },
  });
  assert.equal(transport.send({ type: "ping" }), false);
  socket.receive({ type: "pong" }); // before ready: not handed on
  socket.receive(readyFrame());
  assert.deepEqual(calls, ["beforeReady:connecting", "state:connecting>ready", "ready:ready"]);
  assert.equal(transport.send({ type: "ping" }), true);
  socket.receive({ type: "pong" });
  socket.receive(readyFrame()); // one ready per connection
  assert.deepEqual(frames, [{ type: "pong" }]);
  assert.equal(calls.filter((c) => c.startsWith("ready")).length, 1);
  await transport.close(new Error("done"));
});

Deno.test("Transport ignores the frames and the close of a socket it replaced", async () => {
  const { transport, sockets, timers, calls, frames } = setup();
  const first = await sockets.next();
  await first.handshake();
  transport.ping();
  await first.next("ping");
  timers.advance(10_000); // no pong: the first socket is dropped, a second one is opened
  assert.deepEqual(first.closedByClient, { code: 4000, reason: "No pong" });
  timers.advance(1_000);
  const second = await sockets.next();
  first.receive({ type: "pong" });
  first.drop(1008); // its late close must not stop the client
  await settle();
  assert.equal(transport.state, "reconnecting");
  assert.deepEqual(frames, []);
  await second.handshake();
  assert.equal(transport.state, "ready");
  assert.deepEqual(calls.filter((c) => c.startsWith("disconnected")), ["disconnected:1006:187"]);
  await transport.close(new Error("done"));
});

Deno.test("Transport.whenReady() waits for the next ready, and rejects once closed", async () => {
  const { transport, sockets } = setup();
  const waiting = transport.whenReady();
  const socket = await sockets.next();
  await socket.handshake({ connectionId: "c9" });
  assert.equal((await waiting).connectionId, "c9");
  assert.equal((await transport.whenReady()).connectionId, "c9");
  const error = new Error("bye");
  await transport.close(error);
  await assert.rejects(() => transport.whenReady(), (e) => e === error);
  assert.equal(transport.closedError, error);
});

Deno.test("Transport backs off when no token can be had, and tries again", async () => {
  const sockets = new FakeSockets();
  const timers = new ManualTimers();
  const group = new TimerGroup(timers);
  const lost: { code: number; retryInMs?: number }[] = [];
  let calls = 0;
  const transport = new Transport({
    url: new URL("ws://chat.test/ws"),
    socketFactory: sockets.factory,
    tokens: new TokenSource({
      getToken: () => calls++ === 0 ? Promise.reject(new Error("offline")) : "tok",
      refreshBeforeExpiryMs: 0,
      timers: group,
      channel: { isReady: () => false, sendRefresh: () => false },
    }),
    timers: group,
    backoff: { ...DEFAULT_BACKOFF },
    pingIntervalMs: 0,
    pongTimeoutMs: 0,
    handlers: {
      resumePosition: () => undefined,
      beforeReady() {},
      state() {},
      ready() {},
      frame() {},
      disconnected: (info) => lost.push(info),
      closed() {},
    },
  });
  transport.start();
  await settle();
  assert.deepEqual(lost, [{ code: 0, reason: "Could not get a token: offline", retryInMs: 187 }]);
  assert.equal(sockets.count, 0);
  timers.advance(187);
  const socket = await sockets.next();
  socket.open();
  assert.equal((await socket.next("hello")).token, "tok");
  await transport.close(new Error("done"));
});
