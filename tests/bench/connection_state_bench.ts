/**
 * A connection state transition (target ≤ 200 ns): the transition table check, and the
 * transition as the actor's single writer does it (check, write, settle the readiness latch).
 * Latches are made once per connection, so `run.ts` reports one transition as
 * (lifecycle - new latches) / 6.
 *
 * @module
 */
import { isAllowedTransition, ReadinessLatches } from "../../src/connection/mod.ts";
import type { ApplicationConnectionState } from "../../src/connection/mod.ts";

const LIFE: readonly ApplicationConnectionState[] = [
  "accepted",
  "authenticated",
  "services_ready",
  "processing_ready",
  "closing",
  "closed",
];

let sink = false;

/** The actor's `#transition` body, made of the same exported parts. */
class Writer {
  state: ApplicationConnectionState = "connecting";
  readonly readiness: ReadinessLatches;
  constructor(readiness: ReadinessLatches) {
    this.readiness = readiness;
  }
  transition(to: ApplicationConnectionState): void {
    if (!isAllowedTransition(this.state, to)) return;
    this.state = to;
    this.readiness.markReached(to);
  }
}

Deno.bench("isAllowedTransition()", { group: "state" }, () => {
  sink = isAllowedTransition("services_ready", "processing_ready");
});

Deno.bench("new ReadinessLatches() (once per connection)", { group: "state" }, () => {
  sink = new ReadinessLatches() !== null;
});

Deno.bench("connection lifecycle: new ReadinessLatches() + 6 transitions", {
  group: "state",
}, () => {
  // run.ts reports (this - new ReadinessLatches()) / 6 as the cost of one transition.
  const writer = new Writer(new ReadinessLatches());
  for (const to of LIFE) writer.transition(to);
  sink = writer.state === "closed";
});

globalThis.addEventListener("unload", () => {
  if (!sink) console.log(sink);
});
