import assert from "node:assert/strict";
import { CLIENT_STATES, isAllowedClientTransition } from "../../../src/client/mod.ts";

Deno.test("isAllowedClientTransition() reaches closed from every live state, and leaves it never", () => {
  for (const state of CLIENT_STATES) {
    if (state !== "closed") assert.ok(isAllowedClientTransition(state, "closed"), state);
    assert.equal(isAllowedClientTransition("closed", state), false, state);
  }
});

Deno.test("isAllowedClientTransition() never goes back to connecting after the first attempt", () => {
  for (const state of CLIENT_STATES) {
    assert.equal(isAllowedClientTransition(state, "connecting"), false, state);
  }
  assert.ok(isAllowedClientTransition("ready", "reconnecting"));
  assert.ok(isAllowedClientTransition("reconnecting", "ready"));
  assert.ok(isAllowedClientTransition("connecting", "reconnecting"));
});
