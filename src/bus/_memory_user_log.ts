/**
 * One user's log inside the {@link MemoryEngine}: the retained events, the runs in flight and
 * ended, the purged threads and the approval records. Every method is synchronous, so each
 * engine call that uses it is one atomic step; the rules it applies come from
 * `_engine_rules.ts`, shared with the Redis engine.
 *
 * @module
 */
import type { ActiveRun } from "../protocol/mod.ts";
import { mayDrop, purgeExpired, retentionFloor } from "./_engine_rules.ts";
import type { ApprovalRecord, EventListener, UserEvent } from "./event_engine.ts";

/** A live listener of the log; `active` turns false when it leaves. */
export interface Subscriber {
  readonly listener: EventListener;
  active: boolean;
}

interface StoredEvent {
  readonly event: UserEvent;
  /** When it was appended, on the engine's clock. */
  readonly at: number;
}

/** A run's approval records, kept until `keepUntil` (the retention age after its end). */
interface RunApprovals {
  readonly records: Map<string, ApprovalRecord>;
  keepUntil: number;
}

/** How much of a log the engine keeps, as of one moment. */
export interface TrimLimits {
  /** At most this many events below the retention floor. */
  readonly count: number;
  /** Events below the floor appended before this (ms) are dropped. */
  readonly cutoff: number;
  /** When it is: approval records past their `keepUntil` are dropped. */
  readonly now: number;
}

/** One incarnation of a user's log. */
export class MemoryUserLog {
  readonly epoch = randomEpoch();
  seq = 0;
  /** When it was created or last appended to. */
  lastActivity: number;
  readonly activeRuns = new Map<string, ActiveRun>();
  readonly endedRuns = new Map<string, { readonly endSeq: number; readonly at: number }>();
  /** Purged threads: the head seq and the time of the purge. */
  readonly purged = new Map<string, { readonly seq: number; readonly at: number }>();
  readonly approvals = new Map<string, RunApprovals>();
  readonly subscribers = new Set<Subscriber>();
  // Retained events are contiguous in seq (only the oldest are ever dropped; a purge hides
  // events without removing them), so the event with seq `s` sits at
  // `#events[#head + s - firstSeq]`.
  #events: StoredEvent[] = [];
  #head = 0;

  constructor(now: number) {
    this.lastActivity = now;
  }

  /** Number of events retained (purged ones included). */
  get retained(): number {
    return this.#events.length - this.#head;
  }

  /** Seq of the oldest retained event, or `seq + 1` when none is retained. */
  get firstSeq(): number {
    return this.retained === 0 ? this.seq + 1 : this.#events[this.#head].event.seq;
  }

  /** Active runs, oldest start first. */
  get runsByStart(): ActiveRun[] {
    return [...this.activeRuns.values()].sort((a, b) => a.startSeq - b.startSeq);
  }

  append(event: UserEvent, at: number): void {
    this.#events.push({ event, at });
    this.lastActivity = at;
  }

  /**
   * Drops what retention allows, oldest first: events below the retention floor beyond
   * `count` or appended before `cutoff`, ended runs and purges older than `cutoff`, and
   * approval records past their time.
   */
  trim(limits: TrimLimits): void {
    const floor = retentionFloor(this.activeRuns.values());
    while (this.retained > 0) {
      const oldest = this.#events[this.#head];
      const retained = this.retained;
      if (!mayDrop({ seq: oldest.event.seq, at: oldest.at }, { ...limits, retained, floor })) {
        break;
      }
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
    for (const [runId, ended] of this.endedRuns) {
      if (ended.at >= limits.cutoff) break; // insertion order is end order
      this.endedRuns.delete(runId);
    }
    for (const [threadId, purge] of this.purged) {
      const log = { firstSeq: this.firstSeq, cutoff: limits.cutoff };
      if (purgeExpired(purge, log)) this.purged.delete(threadId);
    }
    for (const [runId, approvals] of this.approvals) {
      if (approvals.keepUntil < limits.now) this.approvals.delete(runId);
    }
  }

  /** The retained events with `from <= seq`, in seq order, purged ones left out. */
  eventsFrom(from: number): UserEvent[] {
    const start = this.#head + Math.max(0, from - this.firstSeq);
    const out: UserEvent[] = [];
    for (let i = start; i < this.#events.length; i++) {
      const { event } = this.#events[i];
      if (!this.purged.has(event.threadId)) out.push(event);
    }
    return out;
  }

  /** Records a purge and takes the thread's runs out of the active ones. */
  purge(threadId: string, at: number): void {
    this.purged.set(threadId, { seq: this.seq, at });
    for (const [runId, run] of this.activeRuns) {
      if (run.threadId === threadId) this.activeRuns.delete(runId);
    }
  }

  /** The approval record of `toolCallId` in `runId`, when held. */
  approval(runId: string, toolCallId: string): ApprovalRecord | undefined {
    return this.approvals.get(runId)?.records.get(toolCallId);
  }

  /** Stores (or replaces) an approval record; a run's records are kept while it runs. */
  recordApproval(record: ApprovalRecord): void {
    let run = this.approvals.get(record.runId);
    if (!run) this.approvals.set(record.runId, run = { records: new Map(), keepUntil: Infinity });
    run.records.set(record.toolCallId, record);
  }

  /** True when nothing newer than `cutoff` was appended and nothing holds the log. */
  idle(cutoff: number): boolean {
    return this.subscribers.size === 0 && this.activeRuns.size === 0 &&
      this.lastActivity < cutoff;
  }
}

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "m" + btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}
