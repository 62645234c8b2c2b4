/**
 * Rules both engines share, so they cannot drift: how an event changes what the log knows of
 * its run, what retention may drop, what a catch-up and a resume return, which events a purge
 * hides, how an approval decision is checked, and how control messages reach their handlers.
 *
 * The Redis engine runs some of these inside its Lua scripts (they must be atomic there);
 * those scripts follow the functions here step for step, and the shared conformance suite
 * (tests/_helpers/engine_conformance.ts) holds both engines to the same answers.
 *
 * @module
 */
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { isTerminalEventName } from "../protocol/mod.ts";
import type { ActiveRun, ResumePosition } from "../protocol/mod.ts";
import type {
  ApprovalDecision,
  ApprovalRecord,
  ControlMessage,
  ResolveApprovalResult,
  UserEvent,
} from "./event_engine.ts";

// ---- run classification -------------------------------------------------------------------

/**
 * What an event does to its run in the log: `start` (`agent_started`) makes it active,
 * `end` (a terminal event) ends it, and the engine refuses anything later; `other` neither.
 */
export type RunEventKind = "start" | "end" | "other";

/** Classifies an event by its name. */
export function runEventKind(name: string): RunEventKind {
  if (name === "agent_started") return "start";
  return isTerminalEventName(name) ? "end" : "other";
}

/** Active runs in the order a catch-up lists them: by their start seq. */
export function sortedRuns(runs: Iterable<ActiveRun>): ActiveRun[] {
  return [...runs].sort((a, b) => a.startSeq - b.startSeq);
}

// ---- retention ----------------------------------------------------------------------------

/**
 * The lowest seq retention must keep: the oldest `agent_started` of the user's active runs,
 * or `Infinity` when none is active. The count and age limits drop only events below it, so
 * a client that connects in the middle of any run, however long, rebuilds it from its start
 * (docs/protocol.md#resume).
 */
export function retentionFloor(activeRuns: Iterable<ActiveRun>): number {
  let floor = Infinity;
  for (const run of activeRuns) floor = Math.min(floor, run.startSeq);
  return floor;
}

/**
 * Whether retention may drop the oldest retained event: it is below the floor and either
 * over the count or older than the age cutoff.
 */
export function mayDrop(
  oldest: { readonly seq: number; readonly at: number },
  limits: {
    readonly retained: number;
    readonly count: number;
    readonly cutoff: number;
    readonly floor: number;
  },
): boolean {
  return oldest.seq < limits.floor &&
    (limits.retained > limits.count || oldest.at < limits.cutoff);
}

/**
 * Whether a purge can be forgotten: none of the thread's events is retained any more (they
 * all precede the oldest retained seq) and the retention age has passed since the purge.
 */
export function purgeExpired(
  purge: { readonly seq: number; readonly at: number },
  log: { readonly firstSeq: number; readonly cutoff: number },
): boolean {
  return purge.seq < log.firstSeq && purge.at < log.cutoff;
}

// ---- reads --------------------------------------------------------------------------------

/** A resume position worth checking: a non-empty epoch and a safe integer `after >= 0`. */
export function isResumable(resume: ResumePosition | undefined): resume is ResumePosition {
  return resume !== undefined && typeof resume.epoch === "string" && resume.epoch !== "" &&
    Number.isSafeInteger(resume.after) && resume.after >= 0;
}

/**
 * Whether a resume is honoured: same epoch, `after` within `0..seq`, and every event after it
 * still retained (the oldest retained seq is at most `after + 1`). Purged events count as
 * retained here: their seqs are holes, not a gap.
 */
export function canResume(
  resume: ResumePosition | undefined,
  log: { readonly epoch: string; readonly seq: number; readonly firstSeq: number },
): boolean {
  if (!isResumable(resume) || resume.epoch !== log.epoch || resume.after > log.seq) return false;
  return resume.after === log.seq || log.firstSeq <= resume.after + 1;
}

/** The events of a not-resumed catch-up: each active run's, from its `agent_started` on. */
export function activeRunEvents(
  events: readonly UserEvent[],
  activeRuns: readonly ActiveRun[],
): UserEvent[] {
  const starts = new Map(activeRuns.map((run) => [run.runId, run.startSeq]));
  return events.filter((event) => event.seq >= (starts.get(event.runId) ?? Infinity));
}

// ---- approvals ----------------------------------------------------------------------------

/**
 * Checks an approval timeout.
 *
 * @throws {RangeError} when `timeoutMs` is not a positive integer.
 */
export function checkTimeout(timeoutMs: number): void {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) {
    throw new RangeError(
      `Cannot request approval: "timeoutMs" must be a positive integer, received ${timeoutMs}`,
    );
  }
}

/**
 * Checks a decision's shape before it reaches the log.
 *
 * @throws {TypeError} when `approved` is true and `by` is not `user`.
 */
export function checkDecision(decision: ApprovalDecision): void {
  if (decision.approved && decision.by !== "user") {
    throw new TypeError(
      `Cannot resolve approval: only "user" may approve, received by "${decision.by}"`,
    );
  }
}

/**
 * Decides what a decision does to a request, in the order {@link ResolveApprovalResult}
 * documents. `undefined` means it wins: the caller publishes `tool_approval_resolved` and
 * records it, in the same atomic step as this check.
 *
 * @param record The request, or `undefined` when the run has no such request.
 * @param state Whether the record's thread was purged, whether the run has ended, and the
 *   engine's clock now (read only for a `timeout` decision).
 */
export function approvalVerdict(
  decision: ApprovalDecision,
  record: ApprovalRecord | undefined,
  state: { readonly purged: boolean; readonly runEnded: boolean; readonly now: () => number },
): Exclude<ResolveApprovalResult, { outcome: "resolved" }> | undefined {
  if (!record || record.runId !== decision.runId || state.purged) return { outcome: "not_found" };
  if (state.runEnded) return { outcome: "run_ended" };
  const won = record.decision;
  if (won) {
    return won.reason === undefined
      ? { outcome: "already", approved: won.approved, by: won.by }
      : { outcome: "already", approved: won.approved, by: won.by, reason: won.reason };
  }
  if (decision.by === "timeout" && state.now() < Date.parse(record.expiresAt)) {
    return { outcome: "not_expired", expiresAt: record.expiresAt };
  }
  return undefined;
}

// ---- control ------------------------------------------------------------------------------

/**
 * Hands a control message to every registered handler; one handler's failure is logged and
 * does not keep the message from the others.
 */
export function fanOutControl(
  handlers: ReadonlySet<(message: ControlMessage) => void>,
  message: ControlMessage,
  options: { readonly log: Logger },
): void {
  const { log } = options;
  for (const handler of [...handlers]) {
    try {
      handler(message);
    } catch (error) {
      log.error("control handler failed", { error: errorMessage(error) });
    }
  }
}

/**
 * Reads a control message sent by another instance.
 *
 * @throws {SyntaxError} when `raw` is not JSON.
 * @throws {TypeError} when it is not a control message this version knows.
 */
export function parseControlMessage(raw: string): ControlMessage {
  const parsed = JSON.parse(raw);
  if (
    parsed?.type !== "cancel" || typeof parsed.userId !== "string" ||
    typeof parsed.runId !== "string"
  ) throw new TypeError("Cannot read control message: not a cancel message");
  return { type: "cancel", userId: parsed.userId, runId: parsed.runId };
}
