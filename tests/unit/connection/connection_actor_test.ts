import assert from "node:assert/strict";
import type { AckFrame, ErrorFrame, EventFrame, ServerFrame } from "../../../src/protocol/mod.ts";
import { actorHarness, signToken } from "../../_helpers/actor_harness.ts";
import type { Harness, HarnessOptions } from "../../_helpers/actor_harness.ts";

/** Opens, says hello as `userId` and waits for ready. */
async function readyHarness(options: HarnessOptions = {}, userId = "alice"): Promise<Harness> {
  const h = actorHarness(options);
  h.open();
  h.send({ type: "hello", token: await h.token(userId) });
  const ready = await h.socket.nextSent();
  assert.equal(ready.type, "ready");
  return h;
}

/** Reads frames until one matches, failing on a deadline. */
async function nextOf<T extends ServerFrame["type"]>(
  h: Harness,
  type: T,
): Promise<Extract<ServerFrame, { type: T }>> {
  for (;;) {
    const frame = await h.socket.nextSent();
    if (frame.type === type) return frame as Extract<ServerFrame, { type: T }>;
  }
}

async function closedWith(h: Harness, code: number): Promise<void> {
  const closed = await h.socket.whenClosed();
  assert.equal(closed.code, code, closed.reason);
  assert.ok(new TextEncoder().encode(closed.reason).length <= 123);
  h.socket.finishClose();
  h.actor.socketClosed(closed.code, closed.reason);
  assert.equal(h.actor.state, "closed");
  assert.deepEqual(h.closedCodes, [code]);
}

// ---- handshake ------------------------------------------------------------------------------

Deno.test("ConnectionActor closes 4400 when the first frame is not a valid hello", async (t) => {
  for (
    const first of [
      '{"type":"ping"}',
      "not json",
      '{"type":"hello","token":5}',
      '{"type":"chat","id":"c","text":"x"}',
    ]
  ) {
    await t.step(first, async () => {
      const h = actorHarness();
      h.open();
      h.send(first);
      await closedWith(h, 4400);
      assert.deepEqual(h.socket.sent, []);
      await h.dispose();
    });
  }
  await t.step("a binary first frame", async () => {
    const h = actorHarness();
    h.open();
    h.actor.receive(new Uint8Array([1, 2, 3]));
    await closedWith(h, 4400);
    await h.dispose();
  });
});

Deno.test("ConnectionActor closes 4401 for a missing, invalid, expired or inconsistent token", async (t) => {
  const cases: [string, (h: Harness) => Promise<HarnessOptions | unknown>][] = [
    ["no token at all", () => Promise.resolve({ type: "hello" })],
    ["a malformed token", () => Promise.resolve({ type: "hello", token: "garbage" })],
    [
      "an expired token",
      async (h) => ({
        type: "hello",
        token: await signToken("alice", Math.floor(h.clock.now() / 1000) - 60),
      }),
    ],
  ];
  for (const [name, hello] of cases) {
    await t.step(name, async () => {
      const h = actorHarness();
      h.open();
      h.send(await hello(h));
      await closedWith(h, 4401);
      assert.deepEqual(h.socket.sent, []);
      await h.dispose();
    });
  }
  await t.step("a subprotocol token and a hello token naming different users", async () => {
    const protocolToken = await signToken("bob", Math.floor(Date.now() / 1000) + 3600);
    const h = actorHarness({ protocolToken });
    h.open();
    h.send({ type: "hello", token: await h.token("alice") });
    await closedWith(h, 4401);
    await h.dispose();
  });
  await t.step("a header principal and a hello token naming different users", async () => {
    const h = actorHarness({
      headerPrincipal: { userId: "bob", exp: Math.floor(Date.now() / 1000) + 3600 },
    });
    h.open();
    h.send({ type: "hello", token: await h.token("alice") });
    await closedWith(h, 4401);
    await h.dispose();
  });
});

Deno.test("ConnectionActor tells the client the largest frame it accepts in ready", async () => {
  const h = actorHarness({ limits: { maxFrameBytes: 4096 } });
  h.open();
  h.send({ type: "hello", token: await h.token() });
  const ready = await h.socket.nextSent();
  assert.equal(ready.type === "ready" && ready.maxFrameBytes, 4096);
  await h.dispose();
});

Deno.test("ConnectionActor accepts a token from the header or the subprotocol alone", async () => {
  const h = actorHarness({
    headerPrincipal: { userId: "carol", exp: Math.floor(Date.now() / 1000) + 3600 },
  });
  h.open();
  h.send({ type: "hello" });
  const ready = await h.socket.nextSent();
  assert.equal(ready.type === "ready" && ready.userId, "carol");
  await h.dispose();
  const protocolToken = await signToken("dave", Math.floor(Date.now() / 1000) + 3600);
  const g = actorHarness({ protocolToken });
  g.open();
  g.send({ type: "hello", token: protocolToken });
  const ready2 = await g.socket.nextSent();
  assert.equal(ready2.type === "ready" && ready2.userId, "dave");
  await g.dispose();
});

Deno.test("ConnectionActor closes 4408 when no hello comes within the handshake timeout", async () => {
  const h = actorHarness();
  h.open();
  h.clock.advance(4999);
  assert.equal(h.socket.closed, undefined);
  h.clock.advance(1);
  await closedWith(h, 4408);
  await h.dispose();
});

Deno.test("ConnectionActor closes 1013 when a handshake cannot finish in time, and gives back what it took", async () => {
  const h = actorHarness();
  h.holds.catchUp.hold();
  h.open();
  h.send({ type: "hello", token: await h.token() });
  await h.holds.catchUp.whenReached();
  h.clock.advance(5000);
  await closedWith(h, 1013);
  h.holds.catchUp.release();
  // The slot was released: ten more connections of the user fit.
  for (let i = 0; i < 10; i++) {
    assert.equal(await h.engine.acquireConnection("alice", `c${i}`, 10), true);
  }
  await h.dispose();
});

Deno.test("ConnectionActor closes 1013 when dependencies are not ready, and 1012 while draining", async () => {
  const notReady = actorHarness({ dependenciesReady: false });
  notReady.open();
  notReady.send({ type: "hello", token: await notReady.token() });
  await closedWith(notReady, 1013);
  await notReady.dispose();
  const draining = actorHarness({ draining: true });
  draining.open();
  draining.send({ type: "hello", token: await draining.token() });
  await closedWith(draining, 1012);
  await draining.dispose();
});

Deno.test("ConnectionActor closes 4429 when the pre-ready queue overflows", async () => {
  const h = actorHarness();
  h.holds.verify.hold();
  h.open();
  h.send({ type: "hello", token: await h.token() });
  for (let i = 0; i < 64; i++) h.send({ type: "ping" });
  assert.equal(h.socket.closed, undefined, "64 queued frames fit");
  h.send({ type: "ping" });
  await closedWith(h, 4429);
  h.holds.verify.release();
  await h.dispose();
});

Deno.test("ConnectionActor closes 4429 beyond the per-user connection limit", async () => {
  const first = actorHarness({ maxConnectionsPerUser: 1 });
  first.open();
  first.send({ type: "hello", token: await first.token() });
  assert.equal((await first.socket.nextSent()).type, "ready");
  const second = actorHarness({
    maxConnectionsPerUser: 1,
    engine: first.engine,
    clock: first.clock,
  });
  second.open();
  second.send({ type: "hello", token: await second.token() });
  await closedWith(second, 4429);
  // Once the first closes, its slot is free again.
  first.actor.close(1000, "bye");
  await closedWith(first, 1000);
  const third = actorHarness({
    maxConnectionsPerUser: 1,
    engine: first.engine,
    clock: first.clock,
  });
  third.open();
  third.send({ type: "hello", token: await third.token() });
  assert.equal((await third.socket.nextSent()).type, "ready");
  await third.dispose();
  await second.dispose();
  await first.dispose();
});

Deno.test("ConnectionActor closes 1009 on a frame larger than the limit", async () => {
  const h = await readyHarness();
  h.send(JSON.stringify({ type: "chat", id: "c", text: "é".repeat(40_000) }));
  await closedWith(h, 1009);
  await h.dispose();
});

Deno.test("ConnectionActor lingers before a close while the peer is still sending, so its code arrives", async (t) => {
  const h = await readyHarness({ limits: { closeLingerMs: 100, closeLingerMaxMs: 1000 } });
  await t.step("an oversized frame decides the close but sends no close frame yet", () => {
    h.send(JSON.stringify({ type: "chat", id: "c", text: "x".repeat(70_000) }));
    assert.equal(h.actor.state, "closing");
    assert.equal(h.socket.closed, undefined);
  });
  await t.step("frames still arriving are read, not handled, and push the close back", () => {
    h.clock.advance(90);
    h.send({ type: "ping" });
    h.clock.advance(90);
    assert.equal(h.socket.closed, undefined, "the peer sent 90 ms ago");
    assert.deepEqual(h.socket.unread(), [], "no pong: nothing is handled while closing");
  });
  await t.step("once the peer is quiet, the close frame goes out with its code", async () => {
    h.clock.advance(10);
    await closedWith(h, 1009);
    assert.equal(h.detector.total(), 0, "frames that crossed our close are not a race");
  });
  await h.dispose();
});

Deno.test("ConnectionActor lingers at most closeLingerMaxMs for a peer that never goes quiet", async () => {
  const h = await readyHarness({ limits: { closeLingerMs: 100, closeLingerMaxMs: 300 } });
  h.send(JSON.stringify({ type: "chat", id: "c", text: "x".repeat(70_000) }));
  for (let i = 0; i < 5; i++) {
    h.clock.advance(50);
    h.send({ type: "ping" });
  }
  assert.equal(h.socket.closed, undefined);
  h.clock.advance(50);
  await closedWith(h, 1009);
  await h.dispose();
});

Deno.test("ConnectionActor closes at once when the peer has been quiet", async () => {
  const h = await readyHarness({ limits: { closeLingerMs: 100, closeLingerMaxMs: 1000 } });
  h.clock.advance(100);
  h.actor.close(1012, "Server restarting");
  await closedWith(h, 1012);
  await h.dispose();
});

Deno.test("ConnectionActor ends a peer-closed handshake quietly: no send, no race", async () => {
  const h = actorHarness();
  h.holds.subscribe.hold();
  h.open();
  h.send({ type: "hello", token: await h.token() });
  await h.holds.subscribe.whenReached();
  h.socket.finishClose();
  h.actor.socketClosed(1001, "going away");
  h.holds.subscribe.release();
  await h.actor.readiness.whenReached("closed");
  assert.deepEqual(h.socket.sent, []);
  assert.equal(h.detector.total(), 0);
  await assert.rejects(h.actor.readiness.whenReached("processing_ready"));
  await h.dispose();
});

// ---- after ready ----------------------------------------------------------------------------

Deno.test("ConnectionActor answers bad frames with error frames and stays open", async () => {
  const h = await readyHarness();
  const cases: [unknown, string, string?][] = [
    ["not json", "bad_frame"],
    [[1, 2], "bad_frame"],
    [{ type: "dance" }, "unknown_type"],
    [{ type: "chat", id: "c1", text: "" }, "invalid_field", "c1"],
    [{ type: "cancel", runId: "nope" }, "not_found", "nope"],
    [{ type: "chat", id: "c2", threadId: "no-such-thread", text: "hi" }, "not_found", "c2"],
    [{ type: "hello" }, "bad_frame"],
  ];
  for (const [frame, code, ref] of cases) {
    h.send(frame);
    const error = await nextOf(h, "error");
    assert.equal(error.code, code, JSON.stringify(frame));
    assert.equal(error.ref, ref);
  }
  h.actor.receive(new Uint8Array([1]));
  assert.equal((await nextOf(h, "error")).code, "bad_frame");
  h.send({ type: "ping" });
  assert.equal((await h.socket.nextSent()).type, "pong");
  assert.equal(h.actor.state, "processing_ready");
  await h.dispose();
});

Deno.test("ConnectionActor acks a chat, streams its run, and treats a repeated id idempotently", async () => {
  const h = await readyHarness();
  h.send({ type: "chat", id: "c1", text: "what is 2+3*4" });
  const ack = await nextOf(h, "ack");
  assert.equal(ack.id, "c1");
  const names: string[] = [];
  let reply = "";
  for (;;) {
    const event = await nextOf(h, "event");
    assert.equal(event.runId, ack.runId);
    names.push(event.name);
    if (event.name === "agent_completed") {
      reply = String(event.data.text);
      break;
    }
  }
  assert.deepEqual(names, [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  assert.match(reply, /14/);
  h.send({ type: "chat", id: "c1", text: "what is 2+3*4" });
  const again = await nextOf(h, "ack") as AckFrame;
  assert.deepEqual(again, { ...ack, duplicate: true, status: "completed" });
  h.send({ type: "chat", id: "c1", text: "something else" });
  const conflict = await nextOf(h, "error") as ErrorFrame;
  assert.deepEqual([conflict.code, conflict.ref], ["idempotency_conflict", "c1"]);
  await h.dispose();
});

Deno.test("ConnectionActor refuses a chat with draining while the server drains", async () => {
  const h = await readyHarness();
  h.gate.draining = true;
  h.send({ type: "chat", id: "c1", text: "hi" });
  const error = await nextOf(h, "error");
  assert.deepEqual([error.code, error.ref], ["draining", "c1"]);
  await h.dispose();
});

Deno.test("ConnectionActor closes 4401 at the token's exp plus tolerance, unless refreshed", async (t) => {
  await t.step("expires", async () => {
    const h = actorHarness();
    h.open();
    h.send({ type: "hello", token: await h.token("alice", 60) });
    assert.equal((await h.socket.nextSent()).type, "ready");
    h.clock.advance(60_000 + 4_000);
    assert.equal(h.socket.closed, undefined, "within the clock tolerance");
    h.clock.advance(2_000);
    await closedWith(h, 4401);
    await h.dispose();
  });
  await t.step("a refresh with a later exp extends it", async () => {
    const h = actorHarness();
    h.open();
    h.send({ type: "hello", token: await h.token("alice", 60) });
    assert.equal((await h.socket.nextSent()).type, "ready");
    h.send({ type: "refresh", token: await h.token("alice", 600) });
    const refreshed = await h.socket.nextSent();
    assert.equal(refreshed.type, "refreshed");
    h.clock.advance(120_000);
    assert.equal(h.socket.closed, undefined);
    h.send({ type: "refresh", token: await h.token("alice", 30) });
    assert.equal((await nextOf(h, "error")).code, "invalid_field", "an earlier exp is refused");
    h.send({ type: "refresh", token: await h.token("mallory", 6000) });
    await closedWith(h, 4401);
    await h.dispose();
  });
  await t.step("a refresh with a bad token closes 4401", async () => {
    const h = await readyHarness();
    h.send({ type: "refresh", token: "bad" });
    await closedWith(h, 4401);
    await h.dispose();
  });
});

Deno.test("ConnectionActor answers rate_limited past the burst and closes 1008 on repeated abuse", async () => {
  const h = await readyHarness({ limits: { rateLimitPerSecond: 1, rateLimitBurst: 5 } });
  for (let i = 0; i < 5; i++) h.send({ type: "ping" });
  h.send({ type: "chat", id: "c-limited", text: "hi" });
  const frames: ServerFrame[] = [];
  for (let i = 0; i < 6; i++) frames.push(await h.socket.nextSent());
  const limited = frames.find((f) => f.type === "error") as ErrorFrame;
  assert.deepEqual([limited.code, limited.ref], ["rate_limited", "c-limited"]);
  for (let i = 0; i < 5; i++) h.send({ type: "ping" });
  await closedWith(h, 1008);
  await h.dispose();
});

Deno.test("ConnectionActor stops sending to a congested socket and resumes once it drains", async () => {
  const h = await readyHarness({ limits: { slowConsumerBytes: 10_000 } });
  await h.publish("alice", { runId: "r9", name: "agent_started" });
  assert.equal((await nextOf(h, "event")).seq, 1);
  h.socket.bufferedAmount = 20_000; // the client is behind
  await h.publish("alice", { runId: "r9", name: "agent_thinking" });
  assert.equal((await nextOf(h, "event")).seq, 2, "the frame that crossed the mark was sent");
  await h.publish("alice", { runId: "r9", name: "agent_thinking" });
  h.clock.advance(50);
  assert.deepEqual(h.socket.unread(), [], "nothing more while congested");
  h.socket.bufferedAmount = 4_000; // drained below half the mark
  h.clock.advance(10);
  assert.equal((await nextOf(h, "event")).seq, 3);
  assert.equal(h.socket.closed, undefined);
  await h.dispose();
});

Deno.test("ConnectionActor closes a slow consumer with 1013 when its socket does not drain", async () => {
  const h = await readyHarness({
    limits: { slowConsumerBytes: 10_000, slowConsumerTimeoutMs: 5_000 },
  });
  h.socket.bufferedAmount = 20_000; // the client stopped reading
  await h.publish("alice", { runId: "r9", name: "agent_started" });
  await nextOf(h, "event");
  await h.publish("alice", { runId: "r9", name: "agent_thinking" });
  for (let i = 0; i < 4; i++) h.clock.advance(1_000);
  await Promise.resolve();
  assert.equal(h.socket.closed, undefined, "still within the timeout");
  for (let i = 0; i < 20 && !h.socket.closed; i++) {
    h.clock.advance(100);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await closedWith(h, 1013);
  await h.dispose();
});

Deno.test("ConnectionActor never delivers another user's events", async () => {
  const h = await readyHarness();
  await h.publish("bob", { runId: "rb", name: "agent_started" });
  await h.publish("alice", { runId: "ra", name: "agent_started" });
  const event = await nextOf(h, "event") as EventFrame;
  assert.equal(event.runId, "ra");
  assert.deepEqual(h.socket.unread(), []);
  await h.dispose();
});

Deno.test("ConnectionActor fills a gap in live delivery from the log", async (t) => {
  const scenario = async (options: HarnessOptions) => {
    const h = await readyHarness({ ...options, dropLiveSeqs: new Set([2]) });
    try {
      for (const name of ["agent_started", "agent_thinking", "agent_thinking"]) {
        await h.publish("alice", { runId: "r1", name });
      }
      const seqs = [];
      for (let i = 0; i < 3; i++) seqs.push((await nextOf(h, "event")).seq);
      assert.deepEqual(seqs, [1, 2, 3]);
    } finally {
      await h.dispose();
    }
  };
  await t.step("passes with every guard on", () => scenario({}));
  await t.step("fails without dedupe_by_seq (no gap detection)", async () => {
    await assert.rejects(() => scenario({ guardsOff: ["dedupe_by_seq"] }), assert.AssertionError);
  });
});
