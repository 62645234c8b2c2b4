import assert from "node:assert/strict";
import { PieceCoalescer } from "../../../src/runs/piece_coalescer.ts";
import type { CoalescedPiece } from "../../../src/runs/piece_coalescer.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

function coalescer(flushMs = 40) {
  const clock = new ManualClock();
  const out: CoalescedPiece[] = [];
  return { clock, out, c: new PieceCoalescer({ clock, flushMs, publish: (p) => out.push(p) }) };
}

Deno.test("PieceCoalescer.text() publishes the first piece at once, then one event per window", () => {
  const { clock, out, c } = coalescer();
  c.text("a");
  assert.deepEqual(out, [{ name: "agent_delta", data: { text: "a" } }], "never delays the first");
  c.text("b");
  c.text("c");
  assert.equal(out.length, 1);
  clock.advance(39);
  assert.equal(out.length, 1);
  clock.advance(1);
  assert.deepEqual(out[1], { name: "agent_delta", data: { text: "bc" } });
  clock.advance(100);
  c.text("d"); // the window has passed: at once
  assert.deepEqual(out[2], { name: "agent_delta", data: { text: "d" } });
});

Deno.test("PieceCoalescer publishes at most 1000 / flushMs + 1 events a second however fast pieces come", () => {
  const { clock, out, c } = coalescer(40);
  for (let ms = 0; ms < 1000; ms++) {
    for (let i = 0; i < 5; i++) c.text("x");
    clock.advance(1);
  }
  c.flush();
  const deltas = out.filter((p) => p.name === "agent_delta");
  assert.ok(deltas.length <= 1000 / 40 + 1 + 1, `${deltas.length} events`); // + the final flush
  assert.equal(deltas.map((p) => p.data.text).join(""), "x".repeat(5000), "nothing lost");
});

Deno.test("PieceCoalescer.thinking() marks a block's first event delta false, the rest true", () => {
  const { clock, out, c } = coalescer();
  c.thinking("Let me", false);
  c.thinking(" think", true);
  clock.advance(40);
  c.thinking("New block", false);
  c.thinking(" goes on", true);
  c.flush();
  assert.deepEqual(out, [
    { name: "agent_thinking", data: { text: "Let me", delta: false } },
    { name: "agent_thinking", data: { text: " think", delta: true } },
    { name: "agent_thinking", data: { text: "New block goes on", delta: false } },
  ]);
});

Deno.test("PieceCoalescer flushes what waits before a piece of another kind", () => {
  const { out, c } = coalescer();
  c.thinking("hmm", false);
  c.thinking(" more", true); // waits
  c.text("Answer"); // reasoning first, then the reply starts at once
  assert.deepEqual(out.map((p) => [p.name, p.data.text]), [
    ["agent_thinking", "hmm"],
    ["agent_thinking", " more"],
    ["agent_delta", "Answer"],
  ]);
});

Deno.test("PieceCoalescer.close() drops what waits and leaves no timer", () => {
  const { clock, out, c } = coalescer();
  c.text("a");
  c.text("b");
  c.close();
  assert.equal(clock.pending, 0);
  clock.advance(100);
  assert.deepEqual(out.map((p) => p.data.text), ["a"]);
});

Deno.test("PieceCoalescer.thinking() keeps one timer for a stream of blocks, and each goes out on time", () => {
  const clock = new ManualClock();
  const out: CoalescedPiece[] = [];
  let armed = 0;
  const counting = {
    now: () => clock.now(),
    setTimer: (callback: () => void, ms: number) => {
      armed++;
      return clock.setTimer(callback, ms);
    },
  };
  const c = new PieceCoalescer({ clock: counting, flushMs: 40, publish: (p) => out.push(p) });
  c.thinking("t0", false); // at once
  for (let i = 1; i <= 100; i++) {
    c.thinking(`t${i}`, false); // a new block flushes the one that waits
    clock.advance(1);
  }
  assert.equal(out.length, 100, "each block but the last is out");
  assert.ok(armed <= 4, `${armed} timers for 100 blocks`);
  assert.equal(clock.pending, 1);
  clock.advance(39);
  assert.equal(out.length, 101, "the last one, 40 ms after the previous went out");
  assert.deepEqual(out.map((p) => p.data.text), Array.from({ length: 101 }, (_, i) => `t${i}`));
});
