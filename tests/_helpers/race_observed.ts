/**
 * The assertion a race proof fails on. It names the race that was seen, so that a guard-off run
 * can be required to fail on the race its guard prevents, not merely on "something failed" (a
 * server that did not boot, a client that timed out).
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import type { RaceKind } from "../../src/connection/mod.ts";

/**
 * A race a test can see: one the server's detector counts (the `kind` label of
 * `agentsocket_race_violations_total`), or one a client sees in the seqs it received.
 */
export type ObservedRaceKind = RaceKind | "duplicate_seq" | "lost_event";

/** Where a race was seen: by a client, on `/metrics`, or in the log of a server that exited. */
export type RaceEvidence = "client" | "metrics" | "log";

/** An assertion that failed because a race happened; `kind` names it. */
export class RaceObserved extends AssertionError {
  /** The race. */
  readonly kind: ObservedRaceKind;
  /** Where it was seen. */
  readonly evidence: RaceEvidence;

  /**
   * @param kind The race.
   * @param evidence Where it was seen.
   * @param detail What exactly was seen.
   */
  constructor(kind: ObservedRaceKind, evidence: RaceEvidence, detail: string) {
    super({ message: `race observed: ${kind} (seen by the ${evidence}): ${detail}` });
    this.name = "RaceObserved";
    this.kind = kind;
    this.evidence = evidence;
  }
}

/**
 * Requires `events` to carry exactly the seqs `expected`, in that order. A seq received twice
 * throws {@link RaceObserved} `duplicate_seq`; an expected seq never received throws
 * `lost_event`; anything else (out of order, unexpected) a plain assertion error.
 *
 * @param events The events a client received, in the order it received them.
 * @param expected The seqs it should have received.
 * @param who Names the receiver in the message.
 */
export function assertSeqs(
  events: readonly { readonly seq: number }[],
  expected: readonly number[],
  who = "the client",
): void {
  const seqs = events.map((e) => e.seq);
  const shown = `${who} received [${seqs.join(",")}], expected [${expected.join(",")}]`;
  const seen = new Set<number>();
  for (const seq of seqs) {
    if (seen.has(seq)) throw new RaceObserved("duplicate_seq", "client", `seq ${seq}: ${shown}`);
    seen.add(seq);
  }
  const lost = expected.filter((seq) => !seen.has(seq));
  if (lost.length > 0) {
    throw new RaceObserved("lost_event", "client", `seqs ${lost.join(",")}: ${shown}`);
  }
  if (seqs.length !== expected.length || seqs.some((seq, i) => seq !== expected[i])) {
    throw new AssertionError({ message: `out of order or unexpected: ${shown}` });
  }
}

/** The seqs `from` to `to`, both included (empty when `to < from`). */
export function seqRange(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}
