import assert from "node:assert/strict";
import { backoffDelay } from "../../../src/client/mod.ts";

Deno.test("backoffDelay() doubles its ceiling each attempt and draws from its upper half", () => {
  const low = [0, 1, 2, 3, 4].map((n) => backoffDelay(n, { random: () => 0 }));
  const high = [0, 1, 2, 3, 4].map((n) => backoffDelay(n, { random: () => 0.999999 }));
  assert.deepEqual(low, [125, 250, 500, 1000, 2000]);
  assert.deepEqual(high, [249, 499, 999, 1999, 3999]);
});

Deno.test("backoffDelay() stays under maxDelayMs however many attempts failed", () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000 };
  for (const attempt of [4, 10, 60, 10_000]) {
    const delay = backoffDelay(attempt, { ...options, random: () => 0.999999 });
    assert.ok(delay >= 500 && delay < 1000, `attempt ${attempt}: ${delay}`);
  }
});

Deno.test("backoffDelay() throws RangeError for a negative or fractional attempt", () => {
  assert.throws(() => backoffDelay(-1), RangeError);
  assert.throws(() => backoffDelay(1.5), RangeError);
});
