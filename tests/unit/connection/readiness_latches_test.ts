import assert from "node:assert/strict";
import { ConnectionClosedError, ReadinessLatches } from "../../../src/connection/mod.ts";
import { CloseCode, ConnectionCloseError } from "../../../src/protocol/mod.ts";

/** Whether a promise is settled now: "resolved", "rejected" or "pending". */
async function stateOf(promise: Promise<void>): Promise<string> {
  const pending = {};
  try {
    const value = await Promise.race([promise, Promise.resolve(pending)]);
    return value === pending ? "pending" : "resolved";
  } catch {
    return "rejected";
  }
}

Deno.test("ReadinessLatches.whenReached() resolves a milestone reached before or after the ask", async () => {
  const latches = new ReadinessLatches();
  const early = latches.whenReached("accepted");
  assert.equal(await stateOf(early), "pending");
  latches.markReached("connecting");
  latches.markReached("accepted");
  assert.equal(await stateOf(early), "resolved");
  assert.equal(await stateOf(latches.whenReached("connecting")), "resolved");
  assert.equal(latches.whenReached("accepted"), early); // one promise per milestone
});

Deno.test("ReadinessLatches.markReached() rejects unreached milestones when closing comes first", async (t) => {
  const latches = new ReadinessLatches();
  const cause = new ConnectionCloseError(CloseCode.Unauthorized, "Invalid token");
  const asked = latches.whenReached("services_ready");
  latches.markReached("connecting");
  latches.markReached("accepted");
  latches.markReached("closing", cause);

  await t.step("a milestone asked for before closing rejects with the cause", async () => {
    const error = await asked.then(() => undefined, (e) => e);
    assert.ok(error instanceof ConnectionClosedError);
    assert.equal(error.closeCause, cause);
    assert.equal(error.message, "Connection closed: Invalid token");
  });
  await t.step("one asked for after closing rejects with the same error", async () => {
    const first = await asked.then(() => undefined, (e) => e);
    for (const state of ["authenticated", "processing_ready"] as const) {
      assert.equal(await latches.whenReached(state).then(() => undefined, (e) => e), first);
    }
  });
  await t.step("a milestone reached before closing stays resolved", async () => {
    assert.equal(await stateOf(latches.whenReached("accepted")), "resolved");
    assert.equal(await stateOf(latches.whenReached("closing")), "resolved");
    assert.equal(await stateOf(latches.whenReached("closed")), "pending");
  });
  await t.step("settling again is a no-op", async () => {
    latches.markReached("processing_ready");
    latches.markReached("closing", new ConnectionCloseError(CloseCode.Normal, "other"));
    const error = await latches.whenReached("processing_ready").then(() => undefined, (e) => e);
    assert.equal((error as ConnectionClosedError).closeCause, cause);
    latches.markReached("closed");
    assert.equal(await stateOf(latches.whenReached("closed")), "resolved");
  });
});

Deno.test("ReadinessLatches leaves no unhandled rejection when nobody awaits", async () => {
  const latches = new ReadinessLatches();
  latches.whenReached("processing_ready"); // asked, never awaited
  latches.markReached("closing");
  latches.whenReached("authenticated"); // asked after closing, never awaited
  await new Promise((resolve) => setTimeout(resolve, 0));
});
