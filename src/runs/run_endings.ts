/**
 * Ending a run is a small persistent procedure (an "ending"): store the terminal status and
 * the reply first (so history holds the reply before `agent_completed` is sent), then publish
 * the remaining events in order, then record the terminal seq. An ending that cannot finish
 * because PostgreSQL or Redis is down stays here and is retried until it does; the run's lease
 * is renewed meanwhile (see `lease_keeper.ts`), and an instance that dies leaves its endings
 * to the orphan reaper of another one.
 *
 * @module
 */
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import type { ApprovalDecision, EventEngine, NewEvent, PublishResult } from "../bus/mod.ts";
import type { ChatStore, RunOutcome } from "../store/mod.ts";

/**
 * One step of an ending: publish an event, or decide a pending approval (the run's end is a
 * decision like any other: the first one wins, and is published in the same atomic step).
 */
export type EndingStep =
  | { readonly kind: "publish"; readonly event: NewEvent }
  | { readonly kind: "resolve"; readonly decision: ApprovalDecision }
  /**
   * Go on only if the log holds the run's `agent_started`: after a publish of it whose answer
   * was lost, and a chat undone, the run may be in the log without a run behind it.
   */
  | { readonly kind: "only_if_started" };

/** A run being ended: what is left to do, in order. */
export interface Ending {
  readonly userId: string;
  readonly runId: string;
  readonly threadId: string;
  /** Set while the terminal status is not stored yet. */
  outcome?: RunOutcome;
  /**
   * What is still to do, the terminal event last: events the run could not publish, pending
   * approvals to decide, open tool calls to complete (an `agent_started` first for an orphan).
   */
  readonly steps: EndingStep[];
  /** The seq of the run's last event known to be in the log (0: none known). */
  confirmedSeq: number;
  /**
   * The last publish failed without an answer, so it may have been carried out: before the
   * next one, the log is read and what it already holds is not published again.
   */
  uncertain: boolean;
}

/** Names published through their own atomic steps, never by an ending's publish steps. */
const DECIDED_ELSEWHERE: ReadonlySet<string> = new Set([
  "tool_approval_requested",
  "tool_approval_resolved",
]);

/** Wraps events as publish steps. */
export function publishSteps(events: readonly NewEvent[]): EndingStep[] {
  return events.map((event) => ({ kind: "publish", event }));
}

/** Options of {@link RunEndings}. */
export interface RunEndingsOptions {
  readonly store: Pick<ChatStore, "finishRun" | "recordRunStart" | "recordRunEnd">;
  readonly engine: Pick<EventEngine, "publish" | "resolveApproval" | "readAfter" | "runSeqs">;
  /** Told when a dependency failed (readiness probes it again at once). */
  readonly onDependencyFailure: (error: unknown, what: string) => void;
  /** Told once per run whose terminal status this instance stored. */
  readonly onStored?: (ending: Ending, outcome: RunOutcome) => void;
}

/** The endings this instance owns. */
export class RunEndings {
  #o: RunEndingsOptions;
  #endings = new Map<string, Ending>();
  #retrying = false;

  constructor(options: RunEndingsOptions) {
    this.#o = options;
  }

  /** The runs being ended (their leases must be kept). */
  runIds(): string[] {
    return [...this.#endings.keys()];
  }

  /** Whether `runId` is being ended here. */
  has(runId: string): boolean {
    return this.#endings.has(runId);
  }

  /** Takes an ending over and moves it as far as the dependencies allow. */
  async begin(ending: Ending): Promise<void> {
    this.#endings.set(ending.runId, ending);
    await this.#advance(ending);
  }

  /** Keeps an ending to be moved by the next {@link retry}. */
  park(ending: Ending): void {
    this.#endings.set(ending.runId, ending);
  }

  /** Moves every ending forward; `skip` names runs whose driver is still at work. */
  async retry(skip: (runId: string) => boolean = () => false): Promise<void> {
    if (this.#retrying) return;
    this.#retrying = true;
    try {
      for (const ending of [...this.#endings.values()]) {
        if (!skip(ending.runId)) await this.#advance(ending);
      }
    } finally {
      this.#retrying = false;
    }
  }

  /**
   * Store the status, publish the events in order, record the terminal seq. Safe to call
   * again after a failure: it resumes where it stopped.
   */
  async #advance(ending: Ending): Promise<void> {
    const { store, engine } = this.#o;
    if (ending.outcome) {
      let changed: boolean;
      try {
        changed = await store.finishRun(ending.userId, ending.runId, ending.outcome);
      } catch (error) {
        this.#o.onDependencyFailure(error, "could not store a run's end");
        return; // retried
      }
      if (!changed) {
        // Another instance ended it first (the lease lapsed): its ending publishes, not ours.
        this.#endings.delete(ending.runId);
        return;
      }
      this.#o.onStored?.(ending, ending.outcome);
      ending.outcome = undefined;
    }
    if (ending.uncertain && !(await this.#reconcile(ending))) return; // retried
    while (ending.steps.length > 0) {
      const step = ending.steps[0];
      if (step.kind === "only_if_started") {
        let started: boolean;
        try {
          const seqs = await engine.runSeqs(ending.userId, [ending.runId]);
          started = seqs.get(ending.runId)?.startSeq !== undefined;
        } catch (error) {
          this.#o.onDependencyFailure(error, "could not read a run's start");
          return; // retried
        }
        if (!started) {
          this.#endings.delete(ending.runId);
          return;
        }
        ending.steps.shift();
        continue;
      }
      if (step.kind === "resolve") {
        try {
          // Whatever the outcome (won, already decided, run or request gone), it is settled.
          await engine.resolveApproval(ending.userId, step.decision);
        } catch (error) {
          this.#o.onDependencyFailure(error, "could not resolve an approval");
          return; // retried once the engine is back
        }
        ending.steps.shift();
        continue;
      }
      const event = step.event;
      let result: PublishResult;
      try {
        result = await engine.publish(ending.userId, event);
      } catch (error) {
        this.#o.onDependencyFailure(error, "could not publish a run's end");
        ending.uncertain = true; // its answer may be what was lost
        return; // retried once the engine is back
      }
      ending.steps.shift();
      if (result.published) ending.confirmedSeq = result.event.seq;
      if (!result.published) {
        // The engine already holds this run's terminal event (published before a crash), or
        // the run's thread was deleted: nothing more of it goes out.
        if (result.reason === "run_ended" && result.endSeq !== undefined) {
          await this.#recordEnd(ending, result.endSeq);
        }
        this.#endings.delete(ending.runId);
        return;
      }
      if (event.name === "agent_started") {
        await store.recordRunStart(ending.userId, ending.runId, result.event.seq).catch(() => {});
      }
      if (ending.steps.length === 0) await this.#recordEnd(ending, result.event.seq);
    }
    this.#endings.delete(ending.runId);
  }

  /**
   * After a publish whose answer was lost: drops from the front of the ending the events the
   * log already holds (only this ending publishes this run's events, in order, so they are its
   * first publish steps).
   *
   * @returns false when the log could not be read (the ending waits for the next retry).
   */
  async #reconcile(ending: Ending): Promise<boolean> {
    let held;
    try {
      held = await this.#o.engine.readAfter(ending.userId, ending.confirmedSeq);
    } catch (error) {
      this.#o.onDependencyFailure(error, "could not read a run's events back");
      return false;
    }
    for (const event of held.events) {
      if (event.runId !== ending.runId || DECIDED_ELSEWHERE.has(event.name)) continue;
      const step = ending.steps[0];
      if (step?.kind !== "publish" || step.event.name !== event.name) break;
      ending.steps.shift();
      ending.confirmedSeq = event.seq;
    }
    ending.uncertain = false;
    return true;
  }

  async #recordEnd(ending: Ending, seq: number): Promise<void> {
    try {
      await this.#o.store.recordRunEnd(ending.userId, ending.runId, seq);
    } catch (error) {
      this.#o.onDependencyFailure(error, "could not record a run's terminal seq");
    }
  }
}

/** The dependency an error names (`postgres`, `redis`), or `unknown`. */
export function dependencyOf(error: unknown): string {
  return error instanceof DependencyUnavailableError ? error.dependency : "unknown";
}
