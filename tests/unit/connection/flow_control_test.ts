import assert from "node:assert/strict";
import { FlowControl } from "../../../src/connection/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

function flow(clock: ManualClock) {
  return new FlowControl({ clock, highWaterBytes: 1000, drainTimeoutMs: 500, pollMs: 10 });
}

Deno.test("FlowControl.sent() marks the socket congested only above the high-water mark", () => {
  const control = flow(new ManualClock());
  control.sent(1000);
  assert.equal(control.congested, false);
  control.sent(1001);
  assert.equal(control.congested, true);
});

Deno.test("FlowControl.drained() resolves once the buffer is below half the mark", async () => {
  const clock = new ManualClock();
  const control = flow(clock);
  control.sent(5000);
  let buffered = 5000;
  const outcome = control.drained(() => buffered, () => true);
  clock.advance(10);
  buffered = 499;
  clock.advance(10);
  assert.equal(await outcome, "drained");
  assert.equal(control.congested, false);
});

Deno.test("FlowControl.drained() times out on a socket that does not drain", async () => {
  const clock = new ManualClock();
  const control = flow(clock);
  control.sent(5000);
  const outcome = control.drained(() => 5000, () => true);
  for (let i = 0; i < 60; i++) {
    clock.advance(10);
    await Promise.resolve();
  }
  assert.equal(await outcome, "timed_out");
  assert.equal(control.congested, true, "still congested: the connection closes");
});

Deno.test("FlowControl.drained() stops when the connection stops being live", async () => {
  const clock = new ManualClock();
  const control = flow(clock);
  control.sent(5000);
  let live = true;
  const outcome = control.drained(() => 5000, () => live);
  live = false;
  clock.advance(10);
  assert.equal(await outcome, "stopped");
});
