import assert from "node:assert/strict";
import {
  CloseCode,
  closeFrameFor,
  ConnectionCloseError,
  truncateReason,
} from "../../../src/protocol/mod.ts";

Deno.test("closeFrameFor() keeps a close decision and maps anything else to 1011", () => {
  assert.deepEqual(closeFrameFor(new ConnectionCloseError(CloseCode.BadHello, "bad hello")), {
    code: 4400,
    reason: "bad hello",
  });
  assert.deepEqual(closeFrameFor(new Error("boom")), { code: 1011, reason: "Internal error" });
  assert.deepEqual(closeFrameFor("a string"), { code: 1011, reason: "Internal error" });
});

Deno.test("truncateReason() fits 123 UTF-8 bytes without splitting a character", () => {
  assert.equal(truncateReason("short"), "short");
  const long = "é".repeat(100); // 200 bytes
  const cut = truncateReason(long);
  assert.ok(new TextEncoder().encode(cut).length <= 123);
  assert.equal(cut, "é".repeat(61));
});
