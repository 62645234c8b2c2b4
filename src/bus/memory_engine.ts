/**
 * The in-process {@link EventEngine}: every user's log, runs and subscribers live in this
 * process's memory. It is the embedded default (no `REDIS_URL`) and the reference the shared
 * conformance suite holds the Redis engine to.
 *
 * Everything a publish does (assign the seq, append, track the run, notify) happens in one
 * synchronous step, which is what makes it atomic here. Listeners are called from a single
 * delivery queue, so a listener that publishes does not reorder what other listeners see.
 *
 * @module
 */
import { systemClock } from "../_util/clock.ts";
import type { Clock, Timer } from "../_util/clock.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { errorMessage, silentLogger } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { Fifo } from "../_util/fifo.ts";
import { TERMINAL_EVENT_NAMES } from "../protocol/mod.ts";
import type { ActiveRun, ResumePosition } from "../protocol/mod.ts";
import type {
  CatchUp,
  ControlMessage,
  EventEngine,
  EventListener,
  EventRange,
  EventSubscription,
  NewEvent,
  PublishResult,
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

interface StoredEvent {
  readonly event: UserEvent;
  /** When it was appended, on the engine's clock. */
  readonly at: number;
}

interface Subscriber {
  readonly listener: EventListener;
  active: boolean;
}

interface Delivery {
  readonly subscribers: readonly Subscriber[];
  readonly event: UserEvent;
  readonly epoch: string;
  readonly userId: string;
}

/** One incarnation of a user's log. */
class UserLog {
  readonly epoch = randomEpoch();
  seq = 0;
  /** When it was created or last appended to. */
  lastActivity: number;
  readonly activeRuns = new Map<string, ActiveRun>();
  readonly endedRuns = new Map<string, { readonly endSeq: number; readonly at: number }>();
  readonly subscribers = new Set<Subscriber>();
  // Retained events are contiguous in seq (only the oldest are ever dropped), so the event
  // with seq `s` sits at `#events[#head + s - firstSeq]`.
  #events: StoredEvent[] = [];
  #head = 0;

  constructor(now: number) {
    this.lastActivity = now;
  }

  get retained(): number {
    return this.#events.length - this.#head;
  }

  /** Seq of the oldest retained event, or `seq + 1` when none is retained. */
  get firstSeq(): number {
    return this.retained === 0 ? this.seq + 1 : this.#events[this.#head].event.seq;
  }

  append(event: UserEvent, at: number): void {
    this.#events.push({ event, at });
  }

  /** Drops events beyond `count` and those appended before `cutoff`, oldest first. */
  trim(count: number, cutoff: number): void {
    while (this.retained > count || (this.retained > 0 && this.#events[this.#head].at < cutoff)) {
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#events.length) {
      this.#events = this.#events.slice(this.#head);
      this.#head = 0;
    }
    if (this.retained === 0 && this.#head > 0) {
      this.#events = [];
      this.#head = 0;
    }
  }

  /** The retained events with `from <= seq`, in seq order. */
  eventsFrom(from: number): UserEvent[] {
    const start = this.#head + Math.max(0, from - this.firstSeq);
    const out: UserEvent[] = [];
    for (let i = start; i < this.#events.length; i++) out.push(this.#events[i].event);
    return out;
  }

  /** True when nothing newer than `cutoff` was appended and nothing holds the log. */
  idle(cutoff: number): boolean {
    return this.subscribers.size === 0 && this.activeRuns.size === 0 &&
      this.lastActivity < cutoff;
  }
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
  #users = new Map<string, UserLog>();
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
    try {
      this.#assertOpen();
      const now = this.#clock.now();
      const user = this.#user(userId, now);
      this.#trim(user, now);
      const ended = user.endedRuns.get(event.runId);
      if (ended) {
        return Promise.resolve({ published: false, reason: "run_ended", endSeq: ended.endSeq });
      }
      const stored: UserEvent = {
        seq: ++user.seq,
        threadId: event.threadId,
        runId: event.runId,
        name: event.name,
        data: event.data,
        ts: event.ts,
      };
      user.append(stored, now);
      user.lastActivity = now;
      if (event.name === "agent_started" && !user.activeRuns.has(event.runId)) {
        user.activeRuns.set(event.runId, {
          runId: event.runId,
          threadId: event.threadId,
          startSeq: stored.seq,
        });
      } else if (TERMINAL_EVENT_NAMES.has(event.name)) {
        user.activeRuns.delete(event.runId);
        user.endedRuns.set(event.runId, { endSeq: stored.seq, at: now });
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
      return Promise.resolve({ published: true, epoch: user.epoch, event: stored });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  subscribe(userId: string, listener: EventListener): Promise<EventSubscription> {
    try {
      this.#assertOpen();
      const user = this.#user(userId, this.#clock.now());
      const subscriber: Subscriber = { listener, active: true };
      user.subscribers.add(subscriber);
      return Promise.resolve({
        unsubscribe: () => {
          if (!subscriber.active) return;
          subscriber.active = false;
          // The log may have been replaced since (only once no subscriber held it, so never
          // while this one did); remove from the one it was added to.
          user.subscribers.delete(subscriber);
        },
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  catchUp(userId: string, resume?: ResumePosition): Promise<CatchUp> {
    try {
      this.#assertOpen();
      const now = this.#clock.now();
      const user = this.#user(userId, now);
      this.#trim(user, now);
      const seq = user.seq;
      const activeRuns = [...user.activeRuns.values()].sort((a, b) => a.startSeq - b.startSeq);
      if (resume && canResume(resume, user.epoch, seq, user.firstSeq)) {
        return Promise.resolve({
          epoch: user.epoch,
          seq,
          activeRuns,
          resumed: true,
          events: user.eventsFrom(resume.after + 1),
        });
      }
      const events = activeRuns.length === 0
        ? []
        : user.eventsFrom(activeRuns[0].startSeq).filter((event) => {
          const run = user.activeRuns.get(event.runId);
          return run !== undefined && event.seq >= run.startSeq;
        });
      return Promise.resolve({ epoch: user.epoch, seq, activeRuns, resumed: false, events });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  readAfter(userId: string, after: number): Promise<EventRange> {
    try {
      this.#assertOpen();
      const now = this.#clock.now();
      const user = this.#user(userId, now);
      this.#trim(user, now);
      const from = Math.max(0, Math.floor(after)) + 1;
      if (from > user.seq) {
        return Promise.resolve({ epoch: user.epoch, seq: user.seq, events: [], complete: true });
      }
      return Promise.resolve({
        epoch: user.epoch,
        seq: user.seq,
        events: user.eventsFrom(from),
        complete: user.firstSeq <= from,
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  runSeqs(userId: string, runIds: readonly string[]): Promise<Map<string, RunSeqs>> {
    try {
      this.#assertOpen();
      const found = new Map<string, RunSeqs>();
      const user = this.#users.get(userId);
      if (!user) return Promise.resolve(found);
      this.#trim(user, this.#clock.now());
      for (const runId of runIds) {
        const startSeq = user.activeRuns.get(runId)?.startSeq;
        const endSeq = user.endedRuns.get(runId)?.endSeq;
        if (startSeq !== undefined || endSeq !== undefined) found.set(runId, { startSeq, endSeq });
      }
      return Promise.resolve(found);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean> {
    try {
      this.#assertOpen();
      let held = this.#connections.get(userId);
      if (held?.has(connectionId)) return Promise.resolve(true);
      if ((held?.size ?? 0) >= limit) return Promise.resolve(false);
      if (!held) this.#connections.set(userId, held = new Set());
      held.add(connectionId);
      return Promise.resolve(true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  releaseConnection(userId: string, connectionId: string): Promise<void> {
    const held = this.#connections.get(userId);
    if (held?.delete(connectionId) && held.size === 0) this.#connections.delete(userId);
    return Promise.resolve();
  }

  sendControl(message: ControlMessage): Promise<void> {
    try {
      this.#assertOpen();
      for (const handler of [...this.#controlHandlers]) {
        try {
          handler(message);
        } catch (error) {
          this.#log.error("control handler failed", { error: errorMessage(error) });
        }
      }
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  onControl(handler: (message: ControlMessage) => void): () => void {
    const wrapped = (message: ControlMessage) => handler(message);
    this.#controlHandlers.add(wrapped);
    return () => this.#controlHandlers.delete(wrapped);
  }

  ping(): Promise<void> {
    try {
      this.#assertOpen();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
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

  #assertOpen(): void {
    if (this.#closed) {
      throw new DependencyUnavailableError("memory", "Cannot use the event engine: it is closed");
    }
  }

  #user(userId: string, now: number): UserLog {
    let user = this.#users.get(userId);
    if (!user) this.#users.set(userId, user = new UserLog(now));
    return user;
  }

  #trim(user: UserLog, now: number): void {
    const cutoff = now - this.#retention.seconds * 1000;
    user.trim(this.#retention.count, cutoff);
    for (const [runId, ended] of user.endedRuns) {
      if (ended.at >= cutoff) break; // insertion order is end order
      user.endedRuns.delete(runId);
    }
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

/** Same epoch, `after` within `0..seq`, and every event after it still retained. */
function canResume(
  resume: ResumePosition,
  epoch: string,
  seq: number,
  firstSeq: number,
): boolean {
  const { after } = resume;
  return resume.epoch === epoch && Number.isSafeInteger(after) && after >= 0 && after <= seq &&
    (after === seq || firstSeq <= after + 1);
}

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "m" + btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}
