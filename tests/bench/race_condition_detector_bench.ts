/**
 * `RaceConditionDetector` per check (target ≤ 100 ns): the checks every send and every close
 * pass. Run by `deno task bench` (micro) or `deno bench tests/bench/`.
 *
 * @module
 */
import { RaceConditionDetector, SocketReadyState } from "../../src/connection/mod.ts";
import type { SendVerdict } from "../../src/connection/mod.ts";

const detector = new RaceConditionDetector();
const event = { isReady: false, isEvent: true, readySent: true };
const ready = { isReady: true, isEvent: false, readySent: false };
let sink: SendVerdict | boolean = "send";

Deno.bench("RaceConditionDetector.checkSend() allowed send", { group: "detector" }, () => {
  sink = detector.checkSend("processing_ready", SocketReadyState.Open, event);
});

Deno.bench("RaceConditionDetector.checkSend() the ready frame", { group: "detector" }, () => {
  sink = detector.checkSend("services_ready", SocketReadyState.Open, ready);
});

Deno.bench("RaceConditionDetector.checkSend() peer closed: drop", { group: "detector" }, () => {
  sink = detector.checkSend("processing_ready", SocketReadyState.Closing, event);
});

Deno.bench("RaceConditionDetector.checkClose() open socket", { group: "detector" }, () => {
  sink = detector.checkClose(SocketReadyState.Open);
});

Deno.bench("RaceConditionDetector.checkSend() violation, counted", { group: "detector" }, () => {
  sink = detector.checkSend("closing", SocketReadyState.Open, event);
});

globalThis.addEventListener("unload", () => {
  if (sink === undefined) console.log(sink);
});
