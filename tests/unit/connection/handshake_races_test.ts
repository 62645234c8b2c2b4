/**
 * The handshake under injected delays at each step. Each scenario runs twice: with every guard
 * on it must pass; with the one guard it proves switched off (the naive handler that sends as
 * soon as it can) it must fail. If a guard's failing run ever passes, the test guarding it has
 * stopped proving anything.
 */
import assert from "node:assert/strict";
import type { UnsafeGuardName } from "../../../src/config/mod.ts";
import type { EventFrame, ReadyFrame, ServerFrame } from "../../../src/protocol/mod.ts";
import { actorHarness } from "../../_helpers/actor_harness.ts";
import type { HarnessOptions } from "../../_helpers/actor_harness.ts";

type Scenario = (options: HarnessOptions) => Promise<void>;

/** Runs `scenario` as is (must pass) and without one guard (must fail). */
async function provesGuard(
  t: Deno.TestContext,
  scenario: Scenario,
  naive: HarnessOptions,
  guardName: string,
): Promise<void> {
  await t.step("passes with every guard on", () => scenario({}));
  await t.step(`fails without ${guardName} (the naive handler)`, async () => {
    await assert.rejects(() => scenario(naive), assert.AssertionError);
  });
}

const waitReady = (frames: ServerFrame[]) => frames.find((f) => f.type === "ready") as ReadyFrame;
const events = (frames: ServerFrame[]) => frames.filter((f) => f.type === "event") as EventFrame[];

// ---- socket open late ------------------------------------------------------------------------

const closeBeforeOpen: Scenario = async (options) => {
  const h = actorHarness({ ...options, dependenciesReady: false });
  try {
    // The upgrade decided to close (dependencies not ready) before the socket opened.
    h.actor.close(1013, "Dependencies not ready");
    assert.equal(h.socket.closedBeforeOpen, false, "closed before open: the code would be lost");
    h.open();
    const closed = await h.socket.whenClosed();
    assert.equal(closed.code, 1013);
    assert.equal(h.detector.total(), 0);
  } finally {
    await h.dispose();
  }
};

Deno.test("ConnectionActor.close() before the socket opens waits for open, so the client sees the code", async (t) => {
  await provesGuard(t, closeBeforeOpen, { guardsOff: ["wait_for_open"] }, "wait_for_open");
});

// ---- a chat pipelined right behind hello, token verification slow ------------------------------

const pipelinedChat: Scenario = async (options) => {
  const h = actorHarness(options);
  try {
    h.holds.verify.hold();
    h.holds.subscribe.hold();
    h.open();
    h.send({ type: "hello", token: await h.token("alice") });
    h.send({ type: "chat", id: "c1", text: "what is 2+3*4" });
    h.send({ type: "ping" });
    await h.holds.verify.whenReached();
    assert.deepEqual(h.socket.sent.map((f) => f.type), [], "nothing may precede ready");
    h.holds.verify.release();
    // Authenticated, not ready: the user is known, so a naive server would answer now (the
    // ping at once); the detector refuses and counts what goes out before ready.
    await h.holds.subscribe.whenReached();
    assert.equal(h.detector.count("frame_before_ready"), 0, "a frame was answered before ready");
    h.holds.subscribe.release();
    const ready = await h.socket.nextSent();
    assert.equal(ready.type, "ready");
    const ack = await h.socket.nextSent();
    assert.equal(ack.type, "ack", `expected the chat's ack after ready, got ${ack.type}`);
    assert.equal((await h.socket.nextSent()).type, "pong", "queued frames are handled in order");
    assert.equal((await h.socket.nextSent()).type, "event"); // agent_started, after the ack
    assert.equal(h.detector.total(), 0, "no race violation");
  } finally {
    await h.dispose();
  }
};

Deno.test("ConnectionActor holds a chat sent between hello and ready, then acks it after ready", async (t) => {
  await provesGuard(
    t,
    pipelinedChat,
    { guardsOff: ["queue_before_ready"] },
    "queue_before_ready",
  );
});

// ---- an event published while the handshake is still running ---------------------------------

const eventDuringHandshake: Scenario = async (options) => {
  const h = actorHarness(options);
  try {
    await h.publish("alice", { runId: "r0", name: "agent_started", data: {} });
    const position = await h.engine.catchUp("alice");
    h.holds.catchUp.hold();
    h.open();
    h.send({
      type: "hello",
      token: await h.token("alice"),
      resume: { epoch: position.epoch, after: position.seq },
    });
    await h.holds.catchUp.whenReached(); // subscribed, catch-up not read yet
    await h.publish("alice", { runId: "r0", name: "agent_thinking", data: { text: "during" } });
    assert.deepEqual(h.socket.sent, [], "the event must wait for ready");
    h.holds.catchUp.release();
    assert.equal((await h.socket.nextSent()).type, "ready");
    const event = await h.socket.nextSent();
    assert.equal(event.type, "event");
    assert.equal((event as EventFrame).seq, position.seq + 1);
    await h.publish("alice", { runId: "r0", name: "agent_thinking", data: { text: "after" } });
    const next = await h.socket.nextSent();
    assert.equal((next as EventFrame).seq, position.seq + 2, "live events follow, once each");
    assert.deepEqual(h.socket.unread(), []);
    assert.equal(h.detector.total(), 0);
  } finally {
    await h.dispose();
  }
};

Deno.test("ConnectionActor delivers an event published during the handshake after ready, in order, once", async (t) => {
  await t.step("passes with every guard on", () => eventDuringHandshake({}));
  for (
    const name of [
      "hold_events_until_ready",
      "dedupe_by_seq",
    ] as UnsafeGuardName[]
  ) {
    await t.step(`fails without ${name} (the naive handler)`, async () => {
      await assert.rejects(
        () => eventDuringHandshake({ guardsOff: [name] }),
        assert.AssertionError,
      );
    });
  }
});

// ---- subscription slow, events published meanwhile -------------------------------------------

const slowSubscription: Scenario = async (options) => {
  const h = actorHarness(options);
  try {
    await h.publish("alice", { runId: "r0", name: "agent_started", data: {} });
    const position = await h.engine.catchUp("alice");
    h.holds.subscribe.hold();
    h.open();
    h.send({
      type: "hello",
      token: await h.token("alice"),
      resume: { epoch: position.epoch, after: position.seq },
    });
    await h.holds.subscribe.whenReached();
    for (let i = 0; i < 3; i++) {
      await h.publish("alice", { runId: "r0", name: "agent_thinking", data: { i } });
    }
    h.holds.subscribe.release();
    assert.equal((await h.socket.nextSent()).type, "ready");
    // No later event arrives to reveal a gap: what the handshake missed stays missed. The
    // mailbox is one queue, so everything held for ready goes out before the pong.
    h.send({ type: "ping" });
    while ((await h.socket.nextSent()).type !== "pong");
    const seqs = events(h.socket.sent).map((e) => e.seq);
    const expected = [1, 2, 3].map((n) => position.seq + n);
    assert.deepEqual(seqs, expected, "every event after the resume point, in order, none lost");
  } finally {
    await h.dispose();
  }
};

Deno.test("HandshakeCoordinator subscribes before reading the catch-up, so a slow subscription loses nothing", async (t) => {
  await provesGuard(
    t,
    slowSubscription,
    { guardsOff: ["subscribe_before_catch_up"] },
    "subscribe_before_catch_up",
  );
});

// ---- ready describes the moment it was read --------------------------------------------------

Deno.test("ConnectionActor sends ready first, with the user's seq and active runs", async () => {
  const h = actorHarness();
  try {
    await h.publish("alice", { runId: "r1", threadId: "t1", name: "agent_started", data: {} });
    await h.publish("alice", { runId: "r1", threadId: "t1", name: "agent_thinking", data: {} });
    await h.publish("bob", { runId: "rb", threadId: "tb", name: "agent_started", data: {} });
    h.open();
    h.send({ type: "hello", token: await h.token("alice") });
    const ready = (await h.socket.nextSent()) as ReadyFrame;
    assert.equal(ready.type, "ready");
    assert.equal(ready.userId, "alice");
    assert.equal(ready.seq, 2);
    assert.equal(ready.resumed, false);
    assert.deepEqual(ready.activeRuns, [{ runId: "r1", threadId: "t1", startSeq: 1 }]);
    // A fresh connection gets each active run from its agent_started.
    assert.deepEqual(
      [await h.socket.nextSent(), await h.socket.nextSent()].map((e) => (e as EventFrame).seq),
      [1, 2],
    );
    assert.equal(waitReady(h.socket.sent).connectionId, h.actor.connectionId);
    assert.equal(h.actor.state, "processing_ready");
  } finally {
    await h.dispose();
  }
});
