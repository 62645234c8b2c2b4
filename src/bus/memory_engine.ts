/**
 * The in-process {@link EventEngine}: every user's log, runs and subscribers live in this
 * process's memory. It is the embedded default (no `REDIS_URL`) and the reference the shared
 * conformance suite holds the Redis engine to.
 *
 * Everything a publish does (assign the seq, append, track the run, notify) happens in one
 * synchronous step, which is what makes it atomic here; so does an approval's check, its
 * record and its event. Listeners are called from a single delivery queue, so a listener that
 * publishes does not reorder what other listeners see. Its clock is the injected `clock`.
 *
 * @module
 */
import { systemClock } from "../_util/clock.ts";
import type { Clock, Timer } from "../_util/clock.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { errorMessage, silentLogger } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { Fifo } from "../_util/fifo.ts";
import type { ResumePosition } from "../protocol/mod.ts";
import {
  activeRunEvents,
  approvalVerdict,
  canResume,
  checkDecision,
  checkTimeout,
  fanOutControl,
  runEventKind,
} from "./_engine_rules.ts";
import { MemoryUserLog } from "./_memory_user_log.ts";
import type { Subscriber } from "./_memory_user_log.ts";
import type {
  ApprovalDecision,
  ApprovalRecord,
  CatchUp,
  ControlMessage,
  EventEngine,
  EventListener,
  EventRange,
  EventSubscription,
  NewApprovalRequest,
  NewEvent,
  PublishResult,
  RequestApprovalResult,
  ResolveApprovalResult,
  RunSeqs,
  UserEvent,
} from "./event_engine.ts";
import { checkRetention } from "./event_retention.ts";
import type { EventRetention } from "./event_retention.ts";

/** Options of {@link MemoryEngine}. */
export interface MemoryEngineOptions {
  /** How much of each user's log is kept. */
  readonly retention: EventRetention;
  /** Stamps retention ages and runs the sweep timer. @default systemClock */
  readonly clock?: Clock;
  /** Where listener failures are reported. @default silentLogger */
  readonly log?: Logger;
  /**
   * How often idle users are swept (dropped whole: no subscriber, no active run and no event
   * younger than `retention.seconds`). @default the smaller of 60 s and `retention.seconds`
   */
  readonly sweepIntervalMs?: number;
}

interface Delivery {
  readonly subscribers: readonly Subscriber[];
  readonly event: UserEvent;
  readonly epoch: string;
  readonly userId: string;
}

/**
 * The in-process event engine: one process, no shared state.
 *
 * @example Publishing and catching up
 * ```ts
 * import { MemoryEngine } from "./memory_engine.ts";
 *
 * const engine = new MemoryEngine({ retention: { count: 1000, seconds: 3600 } });
 * const ts = new Date().toISOString();
 * await engine.publish("alice", { threadId: "t1", runId: "r1", name: "agent_started", data: {}, ts });
 * const snapshot = await engine.catchUp("alice");
 * console.log(snapshot.seq, snapshot.activeRuns); // 1 [{ runId: "r1", threadId: "t1", startSeq: 1 }]
 * await engine.close();
 * ```
 */
export class MemoryEngine implements EventEngine {
  /** Always `memory`. */
  readonly kind = "memory" as const;
  /** Always false: no other instance sees this log. */
  readonly shared = false;

  #clock: Clock;
  #log: Logger;
  #retention: EventRetention;
  #sweepIntervalMs: number;
  #users = new Map<string, MemoryUserLog>();
  #connections = new Map<string, Set<string>>();
  #controlHandlers = new Set<(message: ControlMessage) => void>();
  #deliveries = new Fifo<Delivery>();
  #delivering = false;
  #sweepTimer?: Timer;
  #closed = false;

  /**
   * @throws {RangeError} when `retention` or `sweepIntervalMs` is not a positive integer.
   */
  constructor(options: MemoryEngineOptions) {
    checkRetention(options.retention);
    this.#retention = { ...options.retention };
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLogger;
    this.#sweepIntervalMs = options.sweepIntervalMs ??
      Math.min(60_000, this.#retention.seconds * 1000);
    if (!Number.isSafeInteger(this.#sweepIntervalMs) || this.#sweepIntervalMs < 1) {
      throw new RangeError(
        `Cannot create memory engine: "sweepIntervalMs" must be a positive integer, received ${this.#sweepIntervalMs}`,
      );
    }
    this.#scheduleSweep();
  }

  /** Number of users whose log is held (for tests and metrics). */
  get userCount(): number {
    return this.#users.size;
  }

  publish(userId: string, event: NewEvent): Promise<PublishResult> {
    return this.#step(userId, (user, now) => this.#append(userId, user, event, now));
  }

  subscribe(userId: string, listener: EventListener): Promise<EventSubscription> {
    return this.#step(userId, (user) => {
      const subscriber: Subscriber = { listener, active: true };
      user.subscribers.add(subscriber);
      return {
        unsubscribe: () => {
          if (!subscriber.active) return;
          subscriber.active = false;
          // The log may have been replaced since (only once no subscriber held it, so never
          // while this one did); remove from the one it was added to.
          user.subscribers.delete(subscriber);
        },
      };
    });
  }

  catchUp(userId: string, resume?: ResumePosition): Promise<CatchUp> {
    return this.#step(userId, (user) => {
      const { epoch, seq } = user;
      const activeRuns = user.runsByStart;
      if (canResume(resume, { epoch, seq, firstSeq: user.firstSeq })) {
        const events = user.eventsFrom(resume!.after + 1);
        return { epoch, seq, activeRuns, resumed: true, events };
      }
      const events = activeRuns.length === 0
        ? []
        : activeRunEvents(user.eventsFrom(activeRuns[0].startSeq), activeRuns);
      return { epoch, seq, activeRuns, resumed: false, events };
    });
  }

  readAfter(userId: string, after: number): Promise<EventRange> {
    return this.#step(userId, (user) => {
      const from = Math.max(0, Math.floor(after)) + 1;
      const { epoch, seq } = user;
      if (from > seq) return { epoch, seq, events: [], complete: true };
      return { epoch, seq, events: user.eventsFrom(from), complete: user.firstSeq <= from };
    });
  }

  runSeqs(userId: string, runIds: readonly string[]): Promise<Map<string, RunSeqs>> {
    return this.#step(undefined, () => {
      const found = new Map<string, RunSeqs>();
      const user = this.#users.get(userId);
      if (!user) return found;
      this.#trim(user, this.#clock.now());
      for (const runId of runIds) {
        const startSeq = user.activeRuns.get(runId)?.startSeq;
        const endSeq = user.endedRuns.get(runId)?.endSeq;
        if (startSeq !== undefined || endSeq !== undefined) found.set(runId, { startSeq, endSeq });
      }
      return found;
    });
  }

  purgeThread(userId: string, threadId: string): Promise<void> {
    return this.#step(userId, (user, now) => user.purge(threadId, now));
  }

  requestApproval(
    userId: string,
    request: NewApprovalRequest,
    options: { readonly timeoutMs: number },
  ): Promise<RequestApprovalResult> {
    return this.#step(userId, (user, now): RequestApprovalResult => {
      checkTimeout(options.timeoutMs);
      const { runId, threadId, data } = request;
      if (user.approval(runId, data.toolCallId)) {
        return { published: false, reason: "already_requested" };
      }
      const expiresAt = new Date(now + options.timeoutMs).toISOString();
      const result = this.#append(userId, user, {
        threadId,
        runId,
        name: "tool_approval_requested",
        data: { ...data, expiresAt },
        ts: request.ts,
      }, now);
      if (result.published) {
        user.recordApproval({
          runId,
          threadId,
          toolCallId: data.toolCallId,
          tool: data.tool,
          expiresAt,
          requestSeq: result.event.seq,
        });
      }
      return result;
    });
  }

  resolveApproval(userId: string, decision: ApprovalDecision): Promise<ResolveApprovalResult> {
    return this.#step(userId, (user, now): ResolveApprovalResult => {
      checkDecision(decision);
      const record = user.approval(decision.runId, decision.toolCallId);
      const verdict = approvalVerdict(decision, record, {
        purged: record !== undefined && user.purged.has(record.threadId),
        runEnded: user.endedRuns.has(decision.runId),
        now: () => now,
      });
      if (verdict) return verdict;
      const { approved, by, reason } = decision;
      const result = this.#append(userId, user, {
        threadId: record!.threadId,
        runId: decision.runId,
        name: "tool_approval_resolved",
        data: {
          toolCallId: decision.toolCallId,
          tool: record!.tool,
          approved,
          by,
          ...(reason === undefined ? {} : { reason }),
        },
        ts: decision.ts,
      }, now);
      // The checks above ruled out both refusals; they would mean a bug here.
      if (!result.published) throw new Error(`Approval decision refused: ${result.reason}`);
      const seq = result.event.seq;
      user.recordApproval({
        ...record!,
        decision: reason === undefined ? { approved, by, seq } : { approved, by, reason, seq },
      });
      return { outcome: "resolved", epoch: result.epoch, event: result.event };
    });
  }

  approvalState(
    userId: string,
    ids: { readonly runId: string; readonly toolCallId: string },
  ): Promise<ApprovalRecord | undefined> {
    return this.#step(userId, (user) => {
      const record = user.approval(ids.runId, ids.toolCallId);
      return record && !user.purged.has(record.threadId) ? record : undefined;
    });
  }

  pendingApprovals(userId: string, runId: string): Promise<ApprovalRecord[]> {
    return this.#step(userId, (user) => {
      const records = [...user.approvals.get(runId)?.records.values() ?? []];
      return records
        .filter((record) => !record.decision && !user.purged.has(record.threadId))
        .sort((a, b) => a.requestSeq - b.requestSeq);
    });
  }

  now(): Promise<number> {
    return this.#step(undefined, () => this.#clock.now());
  }

  acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean> {
    return this.#step(undefined, () => {
      let held = this.#connections.get(userId);
      if (held?.has(connectionId)) return true;
      if ((held?.size ?? 0) >= limit) return false;
      if (!held) this.#connections.set(userId, held = new Set());
      held.add(connectionId);
      return true;
    });
  }

  releaseConnection(userId: string, connectionId: string): Promise<void> {
    const held = this.#connections.get(userId);
    if (held?.delete(connectionId) && held.size === 0) this.#connections.delete(userId);
    return Promise.resolve();
  }

  sendControl(message: ControlMessage): Promise<void> {
    return this.#step(
      undefined,
      () => fanOutControl(this.#controlHandlers, message, { log: this.#log }),
    );
  }

  onControl(handler: (message: ControlMessage) => void): () => void {
    const wrapped = (message: ControlMessage) => handler(message);
    this.#controlHandlers.add(wrapped);
    return () => this.#controlHandlers.delete(wrapped);
  }

  ping(): Promise<void> {
    return this.#step(undefined, () => {});
  }

  /** Cancels the sweep timer and drops every subscriber; later calls reject. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#sweepTimer?.cancel();
    this.#sweepTimer = undefined;
    for (const user of this.#users.values()) {
      for (const subscriber of user.subscribers) subscriber.active = false;
      user.subscribers.clear();
    }
    this.#deliveries.clear();
    this.#controlHandlers.clear();
    return Promise.resolve();
  }

  /** Drops aged events and ended runs everywhere, and every idle user whole. */
  sweep(): void {
    const now = this.#clock.now();
    const cutoff = now - this.#retention.seconds * 1000;
    for (const [userId, user] of this.#users) {
      if (user.idle(cutoff)) {
        this.#users.delete(userId);
        continue;
      }
      this.#trim(user, now);
    }
  }

  /**
   * Runs one engine call as one synchronous (so atomic) step: on the user's log, trimmed to
   * now, when `userId` is given. A throw becomes the rejection.
   */
  #step<T>(userId: string | undefined, fn: (user: MemoryUserLog, now: number) => T): Promise<T> {
    try {
      if (this.#closed) {
        throw new DependencyUnavailableError("memory", "Cannot use the event engine: it is closed");
      }
      const now = this.#clock.now();
      let user: MemoryUserLog | undefined;
      if (userId !== undefined) {
        user = this.#users.get(userId);
        if (!user) this.#users.set(userId, user = new MemoryUserLog(now));
        this.#trim(user, now);
      }
      return Promise.resolve(fn(user!, now));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Appends one event: checks, assigns the seq, tracks its run, trims and notifies. */
  #append(userId: string, user: MemoryUserLog, event: NewEvent, now: number): PublishResult {
    if (user.purged.has(event.threadId)) return { published: false, reason: "thread_purged" };
    const ended = user.endedRuns.get(event.runId);
    if (ended) return { published: false, reason: "run_ended", endSeq: ended.endSeq };
    const stored: UserEvent = {
      seq: ++user.seq,
      threadId: event.threadId,
      runId: event.runId,
      name: event.name,
      data: event.data,
      ts: event.ts,
    };
    user.append(stored, now);
    const kind = runEventKind(event.name);
    if (kind === "start" && !user.activeRuns.has(event.runId)) {
      user.activeRuns.set(event.runId, {
        runId: event.runId,
        threadId: event.threadId,
        startSeq: stored.seq,
      });
    } else if (kind === "end") {
      user.activeRuns.delete(event.runId);
      user.endedRuns.set(event.runId, { endSeq: stored.seq, at: now });
      const approvals = user.approvals.get(event.runId);
      if (approvals) approvals.keepUntil = now + this.#retention.seconds * 1000;
    }
    this.#trim(user, now);
    if (user.subscribers.size > 0) {
      this.#deliver({
        subscribers: [...user.subscribers],
        event: stored,
        epoch: user.epoch,
        userId,
      });
    }
    return { published: true, epoch: user.epoch, event: stored };
  }

  #trim(user: MemoryUserLog, now: number): void {
    user.trim({ count: this.#retention.count, cutoff: now - this.#retention.seconds * 1000, now });
  }

  #deliver(delivery: Delivery): void {
    this.#deliveries.push(delivery);
    if (this.#delivering) return; // a listener published: the outer loop delivers it next
    this.#delivering = true;
    try {
      for (let next = this.#deliveries.shift(); next; next = this.#deliveries.shift()) {
        for (const subscriber of next.subscribers) {
          if (!subscriber.active) continue;
          try {
            subscriber.listener(next.event, next.epoch);
          } catch (error) {
            this.#log.error("event listener failed", {
              userId: next.userId,
              seq: next.event.seq,
              error: errorMessage(error),
            });
          }
        }
      }
    } finally {
      this.#delivering = false;
    }
  }

  #scheduleSweep(): void {
    this.#sweepTimer = this.#clock.setTimer(() => {
      if (this.#closed) return;
      this.sweep();
      this.#scheduleSweep();
    }, this.#sweepIntervalMs);
  }
}
