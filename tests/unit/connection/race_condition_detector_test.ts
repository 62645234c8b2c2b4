import assert from "node:assert/strict";
import {
  RACE_KINDS,
  RaceConditionDetector,
  SocketReadyState,
} from "../../../src/connection/mod.ts";
import type { RaceKind } from "../../../src/connection/mod.ts";

const after = { isReady: false, isEvent: false, readySent: true };

Deno.test("RaceConditionDetector counts each kind when it is forced once", async (t) => {
  const seen: RaceKind[] = [];
  const detector = new RaceConditionDetector({ onViolation: (kind) => seen.push(kind) });

  await t.step("send_not_open: a send on a socket still connecting", () => {
    const verdict = detector.checkSend("processing_ready", SocketReadyState.Connecting, after);
    assert.equal(verdict, "refuse");
    assert.equal(detector.count("send_not_open"), 1);
  });
  await t.step("send_not_open: a close on a socket still connecting", () => {
    assert.equal(detector.checkClose(SocketReadyState.Connecting), false);
    assert.equal(detector.count("send_not_open"), 2);
  });
  await t.step("event_before_ready: an event before the ready frame", () => {
    const verdict = detector.checkSend("services_ready", SocketReadyState.Open, {
      isReady: false,
      isEvent: true,
      readySent: false,
    });
    assert.equal(verdict, "refuse");
    assert.equal(detector.count("event_before_ready"), 1);
  });
  await t.step("frame_before_ready: an ack before the ready frame", () => {
    const verdict = detector.checkSend("accepted", SocketReadyState.Open, {
      isReady: false,
      isEvent: false,
      readySent: false,
    });
    assert.equal(verdict, "refuse");
    assert.equal(detector.count("frame_before_ready"), 1);
  });
  await t.step("frame_after_close: a send after the server decided to close", () => {
    assert.equal(detector.checkSend("closing", SocketReadyState.Open, after), "refuse");
    assert.equal(detector.count("frame_after_close"), 1);
  });
  await t.step("invalid_transition: a move the table refuses", () => {
    detector.recordInvalidTransition("closed", "processing_ready");
    assert.equal(detector.count("invalid_transition"), 1);
  });
  await t.step("every kind was seen by the listener and counted in the total", () => {
    assert.deepEqual(new Set(seen), new Set(RACE_KINDS));
    assert.equal(detector.total(), 6);
  });
});

Deno.test("RaceConditionDetector.checkSend() allows a ready first and frames after it", () => {
  const detector = new RaceConditionDetector();
  assert.equal(
    detector.checkSend("services_ready", SocketReadyState.Open, {
      isReady: true,
      isEvent: false,
      readySent: false,
    }),
    "send",
  );
  assert.equal(detector.checkSend("processing_ready", SocketReadyState.Open, after), "send");
  assert.equal(detector.checkClose(SocketReadyState.Open), true);
  assert.equal(detector.total(), 0);
});

Deno.test("RaceConditionDetector.checkSend() drops quietly when the peer closed during a send", () => {
  const detector = new RaceConditionDetector();
  for (const readyState of [SocketReadyState.Closing, SocketReadyState.Closed]) {
    assert.equal(detector.checkSend("processing_ready", readyState, after), "drop");
  }
  assert.equal(detector.checkClose(SocketReadyState.Closed), false);
  assert.equal(detector.total(), 0);
});
