/**
 * Asks a person before a tool runs (`docs/protocol.md#approval`). The request and its one
 * decision live in the user's event log: `requestApproval` publishes
 * `tool_approval_requested` with an `expiresAt` from the engine's clock, and whichever decision
 * comes first, a user's answer from any connection on any instance, the timeout, or the run's
 * end, is recorded as `tool_approval_resolved` in the same atomic step (`resolveApproval`).
 * The instance running the tool learns the decision from the log: it watches the user's
 * events (a live feed that backfills from the log) and reads the approval's record, at once
 * and then now and then, so an answer given on another instance is never lost on its way.
 *
 * @module
 */
import type { Clock, Timer } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import { errorMessage } from "../_util/log.ts";
import type { ApprovalRecord, EventEngine } from "../bus/mod.ts";
import type { Json } from "../protocol/mod.ts";
import type { EventStamper, RunRef } from "./run_events.ts";
import type { RunPublisher } from "./run_publisher.ts";
import type { ApprovalDecision, ApprovalPort } from "./tool_runner.ts";

/** How often a waiting call reads its approval's record, in case an event went unseen. */
const POLL_MS = 2_000;
/** How long to wait before trying again when the engine failed. */
const RETRY_MS = 1_000;

/** Options of {@link ApprovalGate}. */
export interface ApprovalGateOptions {
  readonly engine: Pick<
    EventEngine,
    "requestApproval" | "resolveApproval" | "approvalState" | "subscribe" | "now"
  >;
  readonly publisher: RunPublisher;
  readonly clock: Clock;
  readonly stamper: EventStamper;
  readonly log: Logger;
  /** How long a request waits for a person before it times out. */
  readonly timeoutMs: number;
  /** Told when a dependency failed. */
  readonly onDependencyFailure: (error: unknown, what: string) => void;
}

/** The approvals of one run. */
export class ApprovalGate implements ApprovalPort {
  #run: RunRef;
  #o: ApprovalGateOptions;

  constructor(run: RunRef, options: ApprovalGateOptions) {
    this.#run = run;
    this.#o = options;
  }

  async decide(
    call: { readonly toolCallId: string; readonly tool: string; readonly input: Json },
    signal: AbortSignal,
  ): Promise<ApprovalDecision> {
    const { engine, publisher, stamper } = this.#o;
    const run = this.#run;
    // What the run queued before this call goes out first, then the request.
    await publisher.settle();
    signal.throwIfAborted();
    const requested = await engine.requestApproval(run.userId, {
      threadId: run.threadId,
      runId: run.id,
      data: {
        toolCallId: call.toolCallId,
        tool: call.tool,
        input: call.input as { readonly [key: string]: Json },
      },
      ts: stamper.now(),
    }, { timeoutMs: this.#o.timeoutMs });
    if (!requested.published) {
      // The run ended elsewhere, or its thread was deleted: nothing may be asked any more.
      throw signal.aborted ? signal.reason : new DOMException(requested.reason, "AbortError");
    }
    const expiresAt = String(requested.event.data.expiresAt);
    return await this.#wait(call.toolCallId, expiresAt, signal);
  }

  /** Waits for the decision on one request: seen in the log, or made by the timeout. */
  #wait(toolCallId: string, expiresAt: string, signal: AbortSignal): Promise<ApprovalDecision> {
    const { engine, clock } = this.#o;
    const run = this.#run;
    const ids = { runId: run.id, toolCallId };
    return new Promise<ApprovalDecision>((resolve, reject) => {
      let done = false;
      let unsubscribe = () => {};
      const timers = new Set<Timer>();
      const finish = (outcome: { decision: ApprovalDecision } | { error: unknown }) => {
        if (done) return;
        done = true;
        for (const timer of timers) timer.cancel();
        signal.removeEventListener("abort", onAbort);
        unsubscribe();
        if ("decision" in outcome) resolve(outcome.decision);
        else reject(outcome.error);
      };
      const later = (ms: number, task: () => void) => {
        if (done) return;
        const timer = clock.setTimer(() => {
          timers.delete(timer);
          if (!done) task();
        }, Math.max(0, ms));
        timers.add(timer);
      };
      const onAbort = () => finish({ error: signal.reason });
      signal.addEventListener("abort", onAbort, { once: true });

      const read = async () => {
        let record: ApprovalRecord | undefined;
        try {
          record = await engine.approvalState(run.userId, ids);
        } catch (error) {
          this.#o.onDependencyFailure(error, "could not read an approval");
        }
        if (record?.decision) finish({ decision: record.decision });
        else if (record === undefined && !done) {
          // Gone from the log: its thread was deleted, and the run is being ended.
        }
        later(POLL_MS, read);
      };

      const timeout = async () => {
        try {
          const result = await engine.resolveApproval(run.userId, {
            ...ids,
            approved: false,
            by: "timeout",
            ts: this.#o.stamper.now(),
          });
          switch (result.outcome) {
            case "resolved":
              return finish({ decision: { approved: false, by: "timeout" } });
            case "already":
              return finish({ decision: result });
            case "not_expired":
              return later(Date.parse(result.expiresAt) - (await engine.now()), timeout);
            case "run_ended":
            case "not_found":
              return finish({ error: new DOMException(result.outcome, "AbortError") });
          }
        } catch (error) {
          this.#o.onDependencyFailure(error, "could not time out an approval");
          later(RETRY_MS, timeout);
        }
      };

      void (async () => {
        try {
          const subscription = await engine.subscribe(run.userId, (event) => {
            if (
              event.name === "tool_approval_resolved" && event.runId === run.id &&
              event.data.toolCallId === toolCallId
            ) {
              const data = event.data as {
                approved: boolean;
                by: ApprovalDecision["by"];
                reason?: string;
              };
              finish({
                decision: {
                  approved: data.approved,
                  by: data.by,
                  ...(data.reason === undefined ? {} : { reason: data.reason }),
                },
              });
            }
          });
          if (done) subscription.unsubscribe();
          else unsubscribe = () => subscription.unsubscribe();
        } catch (error) {
          // Without a live feed the poll still finds the decision, only later.
          this.#o.log.warn("approval watch unavailable; polling", { error: errorMessage(error) });
        }
        await read();
        let remaining = this.#o.timeoutMs;
        try {
          remaining = Date.parse(expiresAt) - (await engine.now());
        } catch (error) {
          this.#o.onDependencyFailure(error, "could not read the engine's clock");
        }
        later(remaining, timeout);
      })();
    });
  }
}
