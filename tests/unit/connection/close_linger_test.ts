import assert from "node:assert/strict";
import { CloseLinger } from "../../../src/connection/mod.ts";

Deno.test("CloseLinger.waitMs() is 0 when the peer has been quiet", () => {
  const linger = new CloseLinger({ quietMs: 100, maxMs: 1000 });
  assert.equal(linger.waitMs(5000, 5000), 0, "no frame ever");
  linger.frameArrived(4800);
  assert.equal(linger.waitMs(5000, 5000), 0);
});

Deno.test("CloseLinger.waitMs() waits for quiet after the last frame, at most maxMs", () => {
  const linger = new CloseLinger({ quietMs: 100, maxMs: 1000 });
  linger.frameArrived(5000);
  assert.equal(linger.waitMs(5000, 5000), 100);
  linger.frameArrived(5950);
  assert.equal(linger.waitMs(5960, 5000), 40, "the bound counts from the decision");
  linger.frameArrived(5990);
  assert.equal(linger.waitMs(5995, 5000), 5);
  assert.equal(linger.waitMs(6000, 5000), 0);
});

Deno.test("CloseLinger.waitMs() is always 0 when disabled", () => {
  const linger = new CloseLinger({ quietMs: 0, maxMs: 1000 });
  linger.frameArrived(5000);
  assert.equal(linger.waitMs(5000, 5000), 0);
});
