import assert from "node:assert/strict";
import { MemoryEngine } from "../../../src/bus/mod.ts";
import type { TestingConfig, UnsafeGuardName } from "../../../src/config/mod.ts";
import { SAFE_GUARDS } from "../../../src/connection/mod.ts";
import type { TokenVerifier } from "../../../src/connection/mod.ts";
import { applyTestSeams } from "../../../src/server/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

const NO_KNOBS: TestingConfig = {
  verifyDelayMs: 0,
  subscribeDelayMs: 0,
  catchUpDelayMs: 0,
  guardsOff: [],
};
const verifier: TokenVerifier = { verify: () => Promise.resolve({ userId: "u", exp: 1 }) };

function parts(clock = new ManualClock()) {
  const engine = new MemoryEngine({ clock, retention: { count: 100, seconds: 60 } });
  return { verifier, engine, clock, log: silentLogger };
}

Deno.test("applyTestSeams() with no knob set wires the very parts it was given and every guard", async () => {
  const given = parts();
  const seamed = applyTestSeams(NO_KNOBS, given);
  assert.equal(seamed.verifier, given.verifier);
  assert.equal(seamed.handshakeEngine, given.engine);
  assert.equal(seamed.guards, SAFE_GUARDS);
  assert.ok(Object.values(SAFE_GUARDS).every((on) => on === true));
  await given.engine.close();
});

Deno.test("applyTestSeams() switches off exactly the guards named", async () => {
  const expected: Record<string, keyof typeof SAFE_GUARDS> = {
    "wait_for_open": "waitForOpen",
    "queue_before_ready": "queueBeforeReady",
    "hold_events_until_ready": "holdEventsUntilReady",
    "dedupe_by_seq": "dedupeBySeq",
  };
  for (const [name, key] of Object.entries(expected)) {
    const given = parts();
    const { guards } = applyTestSeams(
      { ...NO_KNOBS, guardsOff: [name as UnsafeGuardName] },
      given,
    );
    assert.deepEqual(guards, { ...SAFE_GUARDS, [key]: false }, name);
    await given.engine.close();
  }
});

Deno.test("applyTestSeams() without subscribe_before_catch_up subscribes only after the read", async () => {
  const given = parts();
  const { handshakeEngine } = applyTestSeams(
    { ...NO_KNOBS, guardsOff: ["subscribe_before_catch_up"] },
    given,
  );
  const seen: number[] = [];
  const subscription = await handshakeEngine.subscribe("u", (event) => seen.push(event.seq));
  const publish = () =>
    given.engine.publish("u", {
      threadId: "t",
      runId: "r",
      name: "agent_started",
      data: {},
      ts: "",
    });
  await publish(); // after "subscribe", before the read: it comes only through the read
  const read = await handshakeEngine.catchUp("u");
  assert.equal(read.seq, 1);
  await publish();
  assert.deepEqual(seen, [2], "the event between subscribe and read never reached the listener");
  subscription.unsubscribe();
  await given.engine.close();
});

Deno.test("applyTestSeams() stretches verification by TEST_DELAY_VERIFY_MS on the clock", async () => {
  const clock = new ManualClock();
  const given = parts(clock);
  const seamed = applyTestSeams({ ...NO_KNOBS, verifyDelayMs: 300 }, given);
  let done = false;
  const verified = seamed.verifier.verify("t").then(() => (done = true));
  clock.advance(299);
  await Promise.resolve();
  assert.equal(done, false);
  clock.advance(1);
  await verified;
  assert.equal(done, true);
  await given.engine.close();
});
