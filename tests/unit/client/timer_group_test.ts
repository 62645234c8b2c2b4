import assert from "node:assert/strict";
import { TimerGroup } from "../../../src/client/timer_group.ts";
import { ManualTimers } from "./_fakes.ts";

Deno.test("TimerGroup.stop() cancels every timer and ends every delay at once", async () => {
  const timers = new ManualTimers();
  const group = new TimerGroup(timers);
  let fired = 0;
  group.set(() => fired++, 10);
  const delayed = group.delay(1_000_000);
  group.stop();
  await delayed;
  timers.advance(2_000_000);
  assert.equal(fired, 0);
  assert.deepEqual(timers.pendingDelays, []);
  group.set(() => fired++, 0);
  timers.advance(1);
  assert.equal(fired, 0, "nothing fires after stop");
});

Deno.test("TimerGroup.set() caps a delay at what a platform timer takes", () => {
  const timers = new ManualTimers();
  const group = new TimerGroup(timers);
  group.set(() => {}, 10 * 2 ** 31);
  group.set(() => {}, -5);
  assert.deepEqual(timers.pendingDelays, [2 ** 31 - 1, 0]);
  group.stop();
});
