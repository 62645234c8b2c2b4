import assert from "node:assert/strict";
import { checkLimit, decodeCursor, encodeCursor } from "../../../src/store/_cursor.ts";

Deno.test("encodeCursor() round-trips through decodeCursor() as URL-safe text", () => {
  for (const position of [0n, 1n, 123_456_789n, 2n ** 63n - 1n]) {
    const cursor = encodeCursor("m", position);
    assert.match(cursor, /^[A-Za-z0-9_-]+$/);
    assert.equal(decodeCursor("m", cursor), position);
  }
  assert.equal(decodeCursor("t", encodeCursor("t", "42")), 42n);
});

Deno.test("decodeCursor() throws RangeError for anything it did not make", () => {
  const bad = [
    "",
    "a",
    "!!!!",
    "dC4x=",
    btoa("t.01"),
    btoa("t.-1"),
    btoa("t.9223372036854775808"),
    btoa("x.1"),
    encodeCursor("m", 1),
    "A".repeat(200),
  ];
  for (const cursor of bad) {
    assert.throws(() => decodeCursor("t", cursor), RangeError, `cursor ${cursor}`);
  }
  assert.throws(() => decodeCursor("t", 5 as unknown as string), RangeError);
});

Deno.test("checkLimit() throws RangeError unless the limit is a positive integer", () => {
  checkLimit(1);
  for (const limit of [0, -1, 1.5, Number.NaN, Infinity]) {
    assert.throws(() => checkLimit(limit), RangeError);
  }
});
