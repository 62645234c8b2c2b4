import assert from "node:assert/strict";
import { Mailbox } from "../../../src/connection/mod.ts";
import type { UserEvent } from "../../../src/bus/mod.ts";

const event = (seq: number): UserEvent => ({
  seq,
  threadId: "t",
  runId: "r",
  name: "agent_delta",
  data: {},
  ts: "",
});

Deno.test("Mailbox.pushFrame() refuses a frame past its limit; taking one frees a place", () => {
  const mailbox = new Mailbox();
  assert.equal(mailbox.pushFrame({ kind: "frame", data: "a" }, 2), true);
  assert.equal(mailbox.pushFrame({ kind: "binary" }, 2), true);
  assert.equal(mailbox.pushFrame({ kind: "frame", data: "c" }, 2), false);
  assert.equal(mailbox.shift()?.kind, "frame");
  assert.equal(mailbox.pushFrame({ kind: "frame", data: "c" }, 2), true);
});

Deno.test("Mailbox.pushEvent() holds events up to its limit, then one gap marker for the rest", () => {
  const mailbox = new Mailbox();
  for (let seq = 1; seq <= 5; seq++) mailbox.pushEvent(event(seq), "e", 2);
  assert.deepEqual(
    [mailbox.shift(), mailbox.shift(), mailbox.shift(), mailbox.shift()].map((i) => i?.kind),
    ["event", "event", "gap", undefined],
  );
  mailbox.pushEvent(event(6), "e", 2);
  assert.equal(mailbox.length, 1, "the limit counts what waits, not what went through");
});

Deno.test("Mailbox keeps frames and events in arrival order, and clear() empties both", () => {
  const mailbox = new Mailbox();
  mailbox.pushEvent(event(1), "e", 10);
  mailbox.pushFrame({ kind: "frame", data: "x" }, 10);
  mailbox.pushEvent(event(2), "e", 10);
  assert.deepEqual([1, 2, 3].map(() => mailbox.shift()?.kind), ["event", "frame", "event"]);
  mailbox.pushFrame({ kind: "frame", data: "y" }, 1);
  mailbox.clear();
  assert.equal(mailbox.length, 0);
  assert.equal(mailbox.pushFrame({ kind: "frame", data: "z" }, 1), true, "counts cleared too");
});

Deno.test("Mailbox.claim() lets one loop hold it at a time", () => {
  const mailbox = new Mailbox();
  assert.equal(mailbox.claim(), true);
  assert.equal(mailbox.running, true);
  assert.equal(mailbox.claim(), false);
  mailbox.release();
  assert.equal(mailbox.claim(), true);
});
