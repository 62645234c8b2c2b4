/**
 * Leases and the orphan reaper. An instance renews the lease of every run it drives or is
 * still ending; once a run's lease lapses (its instance crashed or was killed), another
 * instance claims it and ends it `agent_failed` (`interrupted`), exactly once
 * (`docs/protocol.md#run-events`): an open tool call first completes with an error, and the
 * reply so far is rebuilt from the run's `agent_delta` events, which retention keeps while the
 * run is in flight, and stored.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine, NewEvent, UserEvent } from "../bus/mod.ts";
import type { ApprovalDecider } from "../protocol/mod.ts";
import { INTERRUPTED_ERROR } from "../store/mod.ts";
import type { ChatStore, RunOutcome, RunRecord } from "../store/mod.ts";
import type { Ending, EndingStep, RunEndings } from "./run_endings.ts";
import type { EventStamper } from "./run_events.ts";
import { terminalEvent } from "./run_driver.ts";

/** Options of {@link LeaseKeeper}. */
export interface LeaseKeeperOptions {
  readonly store: Pick<ChatStore, "renewLeases" | "claimOrphanedRuns">;
  readonly engine: Pick<EventEngine, "readAfter" | "pendingApprovals">;
  readonly endings: RunEndings;
  readonly clock: Clock;
  readonly log: Logger;
  readonly stamper: EventStamper;
  /** This instance, the owner recorded on its runs. */
  readonly instanceId: string;
  /** A run's lease. */
  readonly leaseMs: number;
  /** The runs this instance drives (their leases are renewed). */
  readonly localRunIds: () => Iterable<string>;
  /** Told when a dependency failed. */
  readonly onDependencyFailure: (error: unknown, what: string) => void;
}

/** Renews this instance's leases and reaps other instances' orphans, on timers. */
export class LeaseKeeper {
  #o: LeaseKeeperOptions;
  #timers = new Set<Timer>();
  #stopped = false;
  #reaping = false;

  constructor(options: LeaseKeeperOptions) {
    this.#o = options;
  }

  /** Starts renewing (every third of a lease) and reaping (every half). */
  start(): void {
    const { leaseMs } = this.#o;
    this.#every(Math.max(250, Math.floor(leaseMs / 3)), () => this.renew());
    this.#every(Math.max(250, Math.floor(leaseMs / 2)), () => this.reap());
  }

  /** Stops both timers. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers) timer.cancel();
    this.#timers.clear();
  }

  /** Extends the lease of every run this instance drives or ends. */
  async renew(): Promise<void> {
    const runIds = [...this.#o.localRunIds(), ...this.#o.endings.runIds()];
    if (runIds.length === 0) return;
    try {
      await this.#o.store.renewLeases(this.#o.instanceId, runIds, this.#o.leaseMs);
    } catch (error) {
      this.#o.onDependencyFailure(error, "could not renew run leases");
    }
  }

  /** Claims runs whose owner stopped renewing their lease, and ends them. */
  async reap(): Promise<void> {
    if (this.#reaping || this.#stopped) return;
    this.#reaping = true;
    try {
      let orphans: RunRecord[];
      try {
        orphans = await this.#o.store.claimOrphanedRuns(this.#o.instanceId, this.#o.leaseMs, 50);
      } catch (error) {
        this.#o.onDependencyFailure(error, "could not claim orphaned runs");
        return;
      }
      for (const run of orphans) {
        if (this.#o.endings.has(run.id)) continue;
        const ending = await this.#orphanEnding(run);
        // Without its log the reply so far cannot be rebuilt: leave the run; once this claim's
        // lease lapses it is claimed again.
        if (ending === undefined) continue;
        this.#o.log.info("ending an orphaned run", { runId: run.id, status: run.status });
        await this.#o.endings.begin(ending);
      }
    } finally {
      this.#reaping = false;
    }
  }

  /**
   * The ending of a run its owner left behind: a still-running run ends `interrupted` with
   * the reply rebuilt from its pieces; an ended run whose terminal event never went out gets
   * that event. Open tool calls are completed first.
   */
  async #orphanEnding(run: RunRecord): Promise<Ending | undefined> {
    const { stamper } = this.#o;
    const steps: EndingStep[] = [];
    let pieces = "";
    let confirmedSeq = run.startSeq ?? 0;
    if (run.startSeq === null) {
      steps.push(publish(stamper.event(run, {
        name: "agent_started",
        data: { chatId: run.chatId, text: run.text },
      })));
    } else {
      const log = await this.#read(() => this.#runEvents(run), "an orphaned run's events");
      const pending = await this.#read(
        () => this.#o.engine.pendingApprovals(run.userId, run.id),
        "an orphaned run's approvals",
      );
      if (log === undefined || pending === undefined) return undefined;
      const error = run.status === "running" ? INTERRUPTED_ERROR : run.error ?? INTERRUPTED_ERROR;
      const by: ApprovalDecider = run.status === "cancelled"
        ? "cancelled"
        : error.code === "shutdown"
        ? "shutdown"
        : "interrupted";
      const closed = { code: error.code, message: error.message };
      const ts = stamper.now();
      for (const approval of pending) {
        steps.push({
          kind: "resolve",
          decision: { runId: run.id, toolCallId: approval.toolCallId, approved: false, by, ts },
        });
        steps.push(publish(stamper.event(run, {
          name: "tool_completed",
          data: { toolCallId: approval.toolCallId, tool: approval.tool, error: closed },
        })));
      }
      for (const [toolCallId, tool] of openToolCalls(log)) {
        steps.push(publish(stamper.event(run, {
          name: "tool_completed",
          data: { toolCallId, tool, error: closed },
        })));
      }
      for (const event of log) {
        if (event.name === "agent_delta") pieces += String(event.data.text ?? "");
        confirmedSeq = Math.max(confirmedSeq, event.seq);
      }
    }
    let outcome: RunOutcome;
    let store: RunOutcome | undefined;
    if (run.status === "running") {
      outcome = { status: "failed", error: INTERRUPTED_ERROR, reply: pieces };
      store = outcome;
    } else if (run.status === "completed") {
      outcome = { status: "completed", reply: run.reply ?? "" };
    } else if (run.status === "cancelled") {
      outcome = { status: "cancelled", reply: run.reply ?? pieces };
    } else {
      outcome = {
        status: "failed",
        error: run.error ?? INTERRUPTED_ERROR,
        reply: run.reply ?? pieces,
      };
    }
    steps.push(publish(terminalEvent(stamper, run, outcome)));
    return {
      userId: run.userId,
      runId: run.id,
      threadId: run.threadId,
      outcome: store,
      steps,
      confirmedSeq,
      uncertain: false,
    };
  }

  /** Runs a read of the engine; undefined (reported) when it failed. */
  async #read<T>(read: () => Promise<T>, what: string): Promise<T | undefined> {
    try {
      return await read();
    } catch (error) {
      this.#o.onDependencyFailure(error, `could not read ${what}`);
      return undefined;
    }
  }

  /** The run's events in the log, from its `agent_started`. */
  async #runEvents(run: RunRecord): Promise<UserEvent[]> {
    const range = await this.#o.engine.readAfter(run.userId, (run.startSeq ?? 1) - 1);
    return range.events.filter((event) => event.runId === run.id);
  }

  #every(ms: number, task: () => Promise<void>): void {
    const schedule = () => {
      const timer = this.#o.clock.setTimer(async () => {
        this.#timers.delete(timer);
        try {
          await task();
        } catch (error) {
          this.#o.log.error("background task failed", { error: String(error) });
        }
        if (!this.#stopped) schedule();
      }, ms);
      this.#timers.add(timer);
    };
    schedule();
  }
}

function publish(event: NewEvent): EndingStep {
  return { kind: "publish", event };
}

/** Tool calls of a run's events that started and did not complete, by id. */
function openToolCalls(events: readonly UserEvent[]): Map<string, string> {
  const open = new Map<string, string>();
  for (const event of events) {
    const id = String(event.data.toolCallId ?? "");
    if (event.name === "tool_executing") open.set(id, String(event.data.tool ?? ""));
    if (event.name === "tool_completed") open.delete(id);
  }
  return open;
}
