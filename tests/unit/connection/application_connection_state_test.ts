import assert from "node:assert/strict";
import { CONNECTION_STATES, isAllowedTransition, isLive } from "../../../src/connection/mod.ts";
import type { ApplicationConnectionState } from "../../../src/connection/mod.ts";

const ALLOWED: [ApplicationConnectionState, ApplicationConnectionState][] = [
  ["connecting", "accepted"],
  ["accepted", "authenticated"],
  ["authenticated", "services_ready"],
  ["services_ready", "processing_ready"],
  ["connecting", "closing"],
  ["accepted", "closing"],
  ["authenticated", "closing"],
  ["services_ready", "closing"],
  ["processing_ready", "closing"],
  ["closing", "closed"],
];

Deno.test("isAllowedTransition() allows exactly the lifecycle's moves", async (t) => {
  for (const from of CONNECTION_STATES) {
    for (const to of CONNECTION_STATES) {
      const expected = ALLOWED.some(([a, b]) => a === from && b === to);
      await t.step(`${from} -> ${to} is ${expected ? "allowed" : "refused"}`, () => {
        assert.equal(isAllowedTransition(from, to), expected);
      });
    }
  }
});

Deno.test("isAllowedTransition() reaches closed only through closing, from every live state", () => {
  for (const state of CONNECTION_STATES) {
    if (state === "closing" || state === "closed") continue;
    assert.equal(isAllowedTransition(state, "closing"), true, state);
    assert.equal(isAllowedTransition(state, "closed"), false, state);
  }
  assert.deepEqual(
    CONNECTION_STATES.filter((s) => isAllowedTransition("closed", s)),
    [],
  );
});

Deno.test("isLive() is false only for closing and closed", () => {
  assert.deepEqual(CONNECTION_STATES.filter((s) => !isLive(s)), ["closing", "closed"]);
});
