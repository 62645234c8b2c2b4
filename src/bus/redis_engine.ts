/**
 * The shared {@link EventEngine} over Redis: every instance that points at the same Redis and
 * key prefix sees the same per-user logs, runs, approvals, connection counts and control
 * messages, so any number of instances behave as one.
 *
 * ## Keys (all under `keyPrefix`; `{u}` is the URI-encoded user id, a cluster hash tag)
 * - `P:{u}:meta` hash `epoch`, `seq`, `server`: the log's incarnation, its counter, and the
 *   `run_id` of the Redis server that named the epoch.
 * - `P:{u}:log` stream: one entry per event, ID `<seq>-0`, fields `t` (append time, ms, from
 *   the engine's clock), `h` (the thread id, so a read can leave out a purged thread's events
 *   without decoding them) and `e` (the event as JSON, without its seq).
 * - `P:{u}:runs` hash runId → `<startSeq>:<threadId>`: the runs in flight.
 * - `P:{u}:ended:<runId>`: the terminal seq of an ended run, for `retention.seconds`.
 * - `P:{u}:purged` hash threadId → `<head seq>:<ms>` at the purge: threads whose events are
 *   left out of every read and whose new events are refused.
 * - `P:{u}:approvals:<runId>` hash toolCallId → JSON `{thread, tool, exp, seq}` and, once
 *   decided, `approved`, `by`, `reason`, `rseq`: the run's approval requests. It lives while
 *   the run does and `retention.seconds` after its terminal event.
 * - `P:{u}:conns` sorted set connectionId → expiry (ms): the user's connections, all instances.
 * - channels `P:{u}:events` (one per user) and `P:control`.
 *
 * ## Epoch: tied to the Redis server's incarnation
 * A seq may be issued twice when the counter is lost or rewound. Lost (keys deleted or expired,
 * Redis restarted empty) shows as a missing meta hash: the next script starts a new log. Rewound
 * (restored from an older snapshot, or a failover to a replica that lagged) does not: the
 * snapshot brings back the old epoch together with the old counter. What does change in every
 * such case is the server's `run_id` (INFO server), new at every start of redis-server and
 * different on each replica. So the meta records the `run_id` under which its epoch was named,
 * and every script that touches a log compares it with the current one; on a mismatch it names
 * a new epoch and keeps the counter (never below the newest retained event), so clients holding
 * the old epoch get `resumed:false` and start over.
 *
 * The script reads `run_id` itself, with `INFO server`, rather than being passed a value the
 * client read on connect. That costs some server time per script (the README's Performance
 * section has the figures), and buys the absence of a cached value that could go stale: a
 * client-side `run_id` must be re-read after every reconnect before the first script runs, and
 * is simply wrong when a proxy (Envoy, a cloud endpoint) or Sentinel keeps the client's TCP
 * connection while the server behind it changes; then a restored counter would reissue seqs
 * under the old epoch, the one failure this must prevent. The cost: every restart of Redis,
 * even a clean one that lost nothing, gives every user a new epoch, so resumes across it
 * answer `resumed:false` (clients reload history). It needs INFO to be allowed (some managed
 * services rename it; then every script fails loudly).
 *
 * ## Retention: a stream, trimmed exactly, never into a run in flight
 * A stream keyed by seq gives O(log n) reads of "everything after seq N" (XRANGE), compact
 * storage (listpacks, delta-encoded IDs), and built-in trimming; a sorted set would hold a
 * skiplist node and a dict entry per event for the same reads. Both limits stop at the
 * retention floor, the oldest `agent_started` of the active runs (`_engine_rules.ts`). Count:
 * `XADD MINID` at the smaller of the floor and `seq - count + 1` (exact, not `~`, so
 * `retention.count` is a true cap below the floor and `complete`/`resumed` answers are exact;
 * seqs in the stream are contiguous, so this keeps the newest `count`). Age: the scripts drop
 * entries below the floor whose `t` is older than `retention.seconds` (looking at the oldest
 * entries only). The stream key expires `retention.seconds` after the user's last publish
 * while no run is active, and with the meta hash while one is. The meta hash and the runs hash
 * live for at least a week after the last publish or catch-up, so a quiet user's epoch
 * survives.
 *
 * ## Purge and approvals
 * A purge hides a thread rather than deleting its entries (`XDEL` would leave holes that look
 * like trimming to the `complete` and `resumed` checks, which compare the oldest retained seq):
 * the reads return the purged ids beside the entries and the engine drops those entries, by
 * their `h` field, before decoding. The purged entries age out like any other. Approvals live
 * in the log's scripts too: a request is published with `expiresAt` from the server's `TIME`
 * and recorded in one script; a decision is checked, published and recorded in another, so
 * two instances deciding at the same moment get one winner.
 *
 * ## Live delivery
 * One subscriber connection per engine, shared by all its subscriptions: a user's channel is
 * subscribed when the first local listener arrives and unsubscribed when the last leaves. The
 * publish script PUBLISHes `<seq> <epoch> <json>`. Pub/sub may lose messages, so each user's
 * {@link LiveFeed} tracks the last seq delivered, backfills from the stream on a gap and after
 * the subscriber reconnects, and drops duplicates.
 *
 * ## Failing fast
 * Commands never queue while Redis is down: `enableOfflineQueue: false`, `maxRetriesPerRequest:
 * 0`, no resending of unanswered commands, and a command timeout. ioredis reconnects in the
 * background; the engine resubscribes and backfills by itself. Connection errors are logged
 * once per outage.
 *
 * @module
 */
import { Redis } from "ioredis";
import type { RedisOptions } from "ioredis";
import { systemClock } from "../_util/clock.ts";
import type { Clock, Timer } from "../_util/clock.ts";
import { DependencyUnavailableError } from "../_util/dependency_unavailable_error.ts";
import { errorMessage, silentLogger } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { ActiveRun, ApprovalDecider, ResumePosition } from "../protocol/mod.ts";
import {
  activeRunEvents,
  checkDecision,
  checkTimeout,
  fanOutControl,
  isResumable,
  parseControlMessage,
  runEventKind,
  sortedRuns,
} from "./_engine_rules.ts";
import type { RunEventKind } from "./_engine_rules.ts";
import { LiveFeed } from "./_live_feed.ts";
import type { FeedSubscriber } from "./_live_feed.ts";
import {
  ACQUIRE_SOURCE,
  CATCH_UP_SOURCE,
  defineScript,
  PUBLISH_SOURCE,
  PURGE_SOURCE,
  READ_AFTER_SOURCE,
  READ_APPROVALS_SOURCE,
  REQUEST_APPROVAL_SOURCE,
  RESOLVE_APPROVAL_SOURCE,
  runScript,
} from "./_redis_scripts.ts";
import type { RedisScript } from "./_redis_scripts.ts";
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

/** Options of {@link RedisEngine}. */
export interface RedisEngineOptions {
  /** `redis://` or `rediss://` URL. */
  readonly url: string;
  /** Every key and channel starts with it and a colon. */
  readonly keyPrefix: string;
  /** This instance, named in the Redis client names and in log lines. */
  readonly instanceId: string;
  /** How much of each user's log is kept. */
  readonly retention: EventRetention;
  /** Stamps append times and connection expiries; runs the renewal timer. @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly log?: Logger;
  /**
   * How long a connection counted by this instance stays counted without renewal (the renewal
   * runs every third of it), so a dead instance's connections expire. @default 30000
   */
  readonly connectionTtlMs?: number;
  /**
   * How long a command may wait for Redis before it fails with
   * `DependencyUnavailableError`. @default 2000
   */
  readonly commandTimeoutMs?: number;
}

const SCRIPT_SOURCES = {
  publish: PUBLISH_SOURCE,
  catchUp: CATCH_UP_SOURCE,
  readAfter: READ_AFTER_SOURCE,
  purge: PURGE_SOURCE,
  requestApproval: REQUEST_APPROVAL_SOURCE,
  resolveApproval: RESOLVE_APPROVAL_SOURCE,
  readApprovals: READ_APPROVALS_SOURCE,
  acquire: ACQUIRE_SOURCE,
} as const;

type Scripts = { readonly [name in keyof typeof SCRIPT_SOURCES]: RedisScript };

/** What a {@link RedisEngine} is built with, checked and defaulted. */
interface Settings {
  readonly prefix: string;
  readonly instanceId: string;
  readonly retention: EventRetention;
  readonly clock: Clock;
  readonly log: Logger;
  readonly connectionTtlMs: number;
  readonly controlChannel: string;
}

interface UserKeys {
  readonly meta: string;
  readonly log: string;
  readonly runs: string;
  readonly purged: string;
  readonly conns: string;
  readonly channel: string;
  ended(runId: string): string;
  approvals(runId: string): string;
}

/** The flag `append()` takes for each {@link RunEventKind}. */
const KIND_FLAG: Record<RunEventKind, string> = { start: "s", end: "e", other: "" };

/** A user's feed on this instance and the subscribe() calls waiting for it to go live. */
interface FeedEntry {
  readonly userId: string;
  readonly feed: LiveFeed;
  ready: Promise<void>;
  waiting: number;
}

type StreamEntry = [id: string, fields: string[]];

/** A user's epoch and counter outlive the last publish or catch-up by at least this long. */
const META_TTL_MS = 7 * 24 * 3600 * 1000;
/** Reply errors that mean "Redis cannot serve now", not "the request is wrong". */
const UNAVAILABLE_REPLY = /^(LOADING|READONLY|OOM|BUSY|MISCONF|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)/;

/**
 * The Redis event engine. Construct it, then wait for {@link RedisEngine.whenConnected} (or let
 * the readiness probe's {@link RedisEngine.ping} tell when it is usable); `close()` when done.
 *
 * @example Two instances share one log
 * ```ts ignore
 * import { RedisEngine } from "./redis_engine.ts";
 *
 * const options = { url: "redis://127.0.0.1:6379", keyPrefix: "demo", retention: { count: 1000, seconds: 3600 } };
 * const a = new RedisEngine({ ...options, instanceId: "a" });
 * const b = new RedisEngine({ ...options, instanceId: "b" });
 * await Promise.all([a.whenConnected(), b.whenConnected()]);
 * const sub = await b.subscribe("alice", (event) => console.log(event.seq, event.name));
 * await a.publish("alice", { threadId: "t", runId: "r", name: "agent_started", data: {}, ts: new Date().toISOString() });
 * ```
 */
export class RedisEngine implements EventEngine {
  /** Always `redis`. */
  readonly kind = "redis" as const;
  /** Always true: every instance on the same Redis and prefix sees the same logs. */
  readonly shared = true;

  /** The settings, fixed at construction. */
  #o: Settings;
  #cmd: Redis;
  #sub: Redis;
  #scripts: Promise<Scripts>;
  #feeds = new Map<string, FeedEntry>();
  #controlHandlers = new Set<(message: ControlMessage) => void>();
  /** Connections this instance counted, by user, renewed until released. */
  #held = new Map<string, Set<string>>();
  #renewTimer?: Timer;
  #subscriberLive = false;
  #subscriberGeneration = 0;
  #down = new Set<string>();
  /** Settled while both connections are up; replaced by a pending one when either drops. */
  #connected = Promise.withResolvers<void>();
  #isConnected = false;
  #closed = false;
  #closing?: Promise<void>;

  /**
   * Starts connecting in the background; no call waits for it.
   *
   * @throws {RangeError} for a bad retention, TTL or timeout.
   */
  constructor(options: RedisEngineOptions) {
    checkRetention(options.retention);
    this.#o = {
      retention: { ...options.retention },
      prefix: options.keyPrefix,
      instanceId: options.instanceId,
      clock: options.clock ?? systemClock,
      log: options.log ?? silentLogger,
      connectionTtlMs: positive("connectionTtlMs", options.connectionTtlMs ?? 30_000),
      controlChannel: `${options.keyPrefix}:control`,
    };
    const commandTimeout = positive("commandTimeoutMs", options.commandTimeoutMs ?? 2_000);
    this.#connected.promise.catch(() => {}); // a close before connecting is not an error

    const name = `${this.#o.prefix}:${this.#o.instanceId}`.replace(/[^\w.:-]/g, "_");
    const base: RedisOptions = {
      enableOfflineQueue: false, // fail fast while Redis is down, never queue
      maxRetriesPerRequest: 0, // a command in flight when the connection drops fails at once
      autoResendUnfulfilledCommands: false, // never run a publish twice
      autoResubscribe: false, // resubscribed by hand, so a backfill can follow
      commandTimeout,
      connectTimeout: Math.max(commandTimeout, 1_000),
      disconnectTimeout: 0, // close() destroys the socket at once; no timer outlives it
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    };
    this.#cmd = new Redis(options.url, { ...base, connectionName: `${name}:cmd` });
    this.#sub = new Redis(options.url, { ...base, connectionName: `${name}:sub` });
    this.#watch(this.#cmd, "command");
    this.#watch(this.#sub, "subscriber");
    this.#cmd.on("ready", () => this.#checkConnected());
    this.#cmd.on("close", () => this.#disconnected());
    this.#sub.on("ready", () => void this.#onSubscriberReady());
    this.#sub.on("close", () => {
      this.#subscriberLive = false;
      this.#disconnected();
    });
    this.#sub.on(
      "message",
      (channel: string, message: string) => this.#onMessage(channel, message),
    );
    this.#scripts = Promise.all(
      Object.entries(SCRIPT_SOURCES).map(async ([name, source]) =>
        [name, await defineScript(source)] as const
      ),
    ).then((defined) => Object.fromEntries(defined) as Scripts);
    this.#scheduleRenewal();
  }

  /**
   * Resolves once both connections are up and the control channel is subscribed (the state in
   * which {@link ping} resolves): at once when they are, else when they come (back). Rejects
   * when the engine is closed first or `signal` aborts.
   */
  whenConnected(options: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options;
    if (this.#closed) return Promise.reject(unavailable("the engine is closed"));
    const connected = this.#connected.promise;
    if (!signal) return connected;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      connected.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  async publish(userId: string, event: NewEvent): Promise<PublishResult> {
    const reply = await this.#append(userId, {
      script: "publish",
      runId: event.runId,
      args: [event.runId, event.threadId, KIND_FLAG[runEventKind(event.name)], encodeEvent(event)],
    }) as AppendReply;
    if (reply[0] !== 1) return refusal(reply);
    const { threadId, runId, name, data, ts } = event;
    return {
      published: true,
      epoch: reply[2],
      event: { seq: reply[1], threadId, runId, name, data, ts },
    };
  }

  async subscribe(userId: string, listener: EventListener): Promise<EventSubscription> {
    this.#assertOpen();
    if (!this.#subscriberLive) throw unavailable("the subscriber connection is down");
    const channel = this.#keys(userId).channel;
    let entry = this.#feeds.get(channel);
    if (!entry) {
      const created: FeedEntry = {
        userId,
        feed: new LiveFeed({
          userId,
          readAfter: (after) => this.#readRange(userId, after),
          clock: this.#o.clock,
          log: this.#o.log,
        }),
        ready: Promise.resolve(),
        waiting: 0,
      };
      this.#feeds.set(channel, entry = created); // messages reach it from the first one on
      created.ready = this.#startFeed(channel, created);
      created.ready.catch(() => {}); // each waiter sees the rejection
    }
    const joined = entry;
    joined.waiting++;
    try {
      await joined.ready;
    } finally {
      joined.waiting--;
    }
    this.#assertOpen();
    const subscriber: FeedSubscriber = joined.feed.add(listener);
    return {
      unsubscribe: () => {
        if (!joined.feed.remove(subscriber)) return;
        this.#dropFeedIfUnused(channel, joined);
      },
    };
  }

  async catchUp(userId: string, resume?: ResumePosition): Promise<CatchUp> {
    const keys = this.#keys(userId);
    const resumable = isResumable(resume);
    const reply = await this.#run("catchUp", [keys.meta, keys.log, keys.runs, keys.purged], [
      randomEpoch(),
      this.#o.clock.now(),
      this.#o.retention.seconds * 1000,
      META_TTL_MS,
      resumable ? resume.epoch : "",
      resumable ? resume.after : 0,
    ]) as [string, number, number, string[], StreamEntry[], string[]];
    const [epoch, seq, resumed, flatRuns, entries, purged] = reply;
    const activeRuns = decodeRuns(flatRuns);
    let events = decodeEntries(entries, purged);
    if (resumed !== 1) events = activeRunEvents(events, activeRuns);
    return { epoch, seq, activeRuns, resumed: resumed === 1, events };
  }

  readAfter(userId: string, after: number): Promise<EventRange> {
    return this.#readRange(userId, after);
  }

  async runSeqs(userId: string, runIds: readonly string[]): Promise<Map<string, RunSeqs>> {
    this.#assertOpen();
    const found = new Map<string, RunSeqs>();
    if (runIds.length === 0) return found;
    const keys = this.#keys(userId);
    let starts: (string | null)[];
    let ends: (string | null)[];
    try {
      [starts, ends] = await Promise.all([
        this.#cmd.hmget(keys.runs, ...runIds),
        this.#cmd.mget(...runIds.map((runId) => keys.ended(runId))),
      ]);
    } catch (error) {
      throw asUnavailable(error);
    }
    runIds.forEach((runId, i) => {
      // runs: `<startSeq>:<threadId>`; ended: the terminal seq.
      const startSeq = starts[i] === null ? undefined : Number(starts[i]!.split(":")[0]);
      const endSeq = ends[i] === null ? undefined : Number(ends[i]);
      if (startSeq !== undefined || endSeq !== undefined) found.set(runId, { startSeq, endSeq });
    });
    return found;
  }

  async purgeThread(userId: string, threadId: string): Promise<void> {
    const keys = this.#keys(userId);
    await this.#run("purge", [keys.meta, keys.log, keys.runs, keys.purged], [
      randomEpoch(),
      this.#o.clock.now(),
      this.#o.retention.seconds * 1000,
      META_TTL_MS,
      threadId,
    ]);
  }

  async requestApproval(
    userId: string,
    request: NewApprovalRequest,
    options: { readonly timeoutMs: number },
  ): Promise<RequestApprovalResult> {
    checkTimeout(options.timeoutMs);
    const { runId, threadId, data } = request;
    // The event's JSON around the value of `expiresAt`, which the script fills in from TIME.
    const dataJson = JSON.stringify(data);
    const head = `{"threadId":${JSON.stringify(threadId)},"runId":${JSON.stringify(runId)},` +
      `"name":"tool_approval_requested","ts":${JSON.stringify(request.ts)},"data":` +
      (dataJson === "{}" ? "{" : `${dataJson.slice(0, -1)},`) + `"expiresAt":"`;
    const reply = await this.#append(userId, {
      script: "requestApproval",
      runId,
      args: [runId, threadId, data.toolCallId, data.tool, options.timeoutMs, head, `"}}`],
    }) as AppendReply | [1, number, string, string] | [3];
    if (reply[0] === 3) return { published: false, reason: "already_requested" };
    if (reply[0] !== 1) return refusal(reply);
    const expiresAt = (reply as [1, number, string, string])[3];
    return {
      published: true,
      epoch: reply[2],
      event: {
        seq: reply[1],
        threadId,
        runId,
        name: "tool_approval_requested",
        data: { ...data, expiresAt },
        ts: request.ts,
      },
    };
  }

  async resolveApproval(
    userId: string,
    decision: ApprovalDecision,
  ): Promise<ResolveApprovalResult> {
    checkDecision(decision);
    const { runId, toolCallId, approved, by, reason } = decision;
    const reply = await this.#append(userId, {
      script: "resolveApproval",
      runId,
      args: [
        runId,
        toolCallId,
        approved ? 1 : 0,
        by,
        reason === undefined ? 0 : 1,
        reason ?? "",
        decision.ts,
      ],
    }) as [string, ...(string | number)[]];
    switch (reply[0]) {
      case "resolved": {
        const [, seq, epoch, threadId, tool] = reply as [string, number, string, string, string];
        const data = reason === undefined
          ? { toolCallId, tool, approved, by }
          : { toolCallId, tool, approved, by, reason };
        const event: UserEvent = {
          seq,
          threadId,
          runId,
          name: "tool_approval_resolved",
          data,
          ts: decision.ts,
        };
        return { outcome: "resolved", epoch, event };
      }
      case "already": {
        const [, won, wonBy, wonReason] = reply as [string, number, ApprovalDecider, string?];
        return wonReason === undefined
          ? { outcome: "already", approved: won === 1, by: wonBy }
          : { outcome: "already", approved: won === 1, by: wonBy, reason: wonReason };
      }
      case "not_expired":
        return { outcome: "not_expired", expiresAt: String(reply[1]) };
      case "run_ended":
        return { outcome: "run_ended" };
      default:
        return { outcome: "not_found" };
    }
  }

  async approvalState(
    userId: string,
    ids: { readonly runId: string; readonly toolCallId: string },
  ): Promise<ApprovalRecord | undefined> {
    const [record] = await this.#readApprovals(userId, ids.runId, ids.toolCallId);
    return record;
  }

  async pendingApprovals(userId: string, runId: string): Promise<ApprovalRecord[]> {
    const records = await this.#readApprovals(userId, runId, "");
    return records.sort((a, b) => a.requestSeq - b.requestSeq);
  }

  async now(): Promise<number> {
    this.#assertOpen();
    try {
      const [seconds, micros] = await this.#cmd.time();
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  async acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean> {
    const now = this.#o.clock.now();
    const ttl = this.#o.connectionTtlMs;
    const counted = await this.#run("acquire", [this.#keys(userId).conns], [
      connectionId,
      now,
      now + ttl,
      limit,
      ttl,
    ]);
    if (counted !== 1) return false;
    let held = this.#held.get(userId);
    if (!held) this.#held.set(userId, held = new Set());
    held.add(connectionId);
    return true;
  }

  async releaseConnection(userId: string, connectionId: string): Promise<void> {
    const held = this.#held.get(userId);
    if (held?.delete(connectionId) && held.size === 0) this.#held.delete(userId);
    if (this.#closed) return; // close() gave back every connection this instance counted
    try {
      await this.#cmd.zrem(this.#keys(userId).conns, connectionId);
    } catch (error) {
      throw asUnavailable(error); // not renewed any more: it expires on its own
    }
  }

  async sendControl(message: ControlMessage): Promise<void> {
    this.#assertOpen();
    try {
      await this.#cmd.publish(this.#o.controlChannel, JSON.stringify(message));
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  onControl(handler: (message: ControlMessage) => void): () => void {
    const wrapped = (message: ControlMessage) => handler(message);
    this.#controlHandlers.add(wrapped);
    return () => this.#controlHandlers.delete(wrapped);
  }

  async ping(): Promise<void> {
    this.#assertOpen();
    if (!this.#subscriberLive) throw unavailable("the subscriber connection is down");
    try {
      await this.#cmd.ping();
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  /** Releases this instance's connections, stops the timers and closes both connections. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#renewTimer?.cancel();
    this.#renewTimer = undefined;
    for (const entry of this.#feeds.values()) entry.feed.close();
    this.#feeds.clear();
    this.#controlHandlers.clear();
    this.#connected.reject(unavailable("the engine was closed"));
    if (this.#held.size > 0 && this.#cmd.status === "ready") {
      // Give the slots back now rather than letting them expire.
      const pipeline = this.#cmd.pipeline();
      for (const [userId, ids] of this.#held) pipeline.zrem(this.#keys(userId).conns, ...ids);
      await pipeline.exec().catch(() => {});
    }
    this.#held.clear();
    await Promise.all([disconnect(this.#cmd), disconnect(this.#sub)]);
  }

  // ---- commands -----------------------------------------------------------------------------

  async #readRange(userId: string, after: number): Promise<EventRange> {
    const keys = this.#keys(userId);
    const from = Number.isFinite(after) ? Math.max(0, Math.floor(after)) : 0;
    const reply = await this.#run("readAfter", [keys.meta, keys.log, keys.runs, keys.purged], [
      randomEpoch(),
      this.#o.clock.now(),
      this.#o.retention.seconds * 1000,
      META_TTL_MS,
      from,
    ]) as [string, number, number, StreamEntry[], string[]];
    const [epoch, seq, complete, entries, purged] = reply;
    return { epoch, seq, complete: complete === 1, events: decodeEntries(entries, purged) };
  }

  /**
   * Runs a script that appends through `append()` (see `_redis_scripts.ts`) for an event of
   * `runId`: the six keys and first six arguments `append()` takes, then `args`.
   */
  #append(
    userId: string,
    call: {
      readonly script: "publish" | "requestApproval" | "resolveApproval";
      readonly runId: string;
      readonly args: readonly (string | number)[];
    },
  ): Promise<unknown> {
    const { script, runId, args } = call;
    const keys = this.#keys(userId);
    return this.#run(script, [
      keys.meta,
      keys.log,
      keys.runs,
      keys.ended(runId),
      keys.purged,
      keys.approvals(runId),
    ], [
      randomEpoch(),
      this.#o.clock.now(),
      this.#o.retention.count,
      this.#o.retention.seconds * 1000,
      META_TTL_MS,
      keys.channel,
      ...args,
    ]);
  }

  async #readApprovals(
    userId: string,
    runId: string,
    toolCallId: string,
  ): Promise<ApprovalRecord[]> {
    const keys = this.#keys(userId);
    const flat = await this.#run("readApprovals", [keys.approvals(runId), keys.purged], [
      toolCallId,
    ]) as string[];
    const records: ApprovalRecord[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      records.push(decodeApproval(runId, flat[i], flat[i + 1]));
    }
    return records;
  }

  async #run(
    script: keyof Scripts,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    this.#assertOpen();
    const scripts = await this.#scripts;
    try {
      return await runScript(this.#cmd, scripts[script], keys, args);
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  #keys(userId: string): UserKeys {
    const base = `${this.#o.prefix}:{${encodeURIComponent(userId)}}`;
    return {
      meta: `${base}:meta`,
      log: `${base}:log`,
      runs: `${base}:runs`,
      purged: `${base}:purged`,
      conns: `${base}:conns`,
      channel: `${base}:events`,
      ended: (runId) => `${base}:ended:${runId}`,
      approvals: (runId) => `${base}:approvals:${runId}`,
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw unavailable("the engine is closed");
  }

  // ---- connections and subscriptions --------------------------------------------------------

  #watch(redis: Redis, role: string): void {
    redis.on("error", (error: Error) => {
      if (this.#closed || this.#down.has(role)) return;
      this.#down.add(role);
      this.#o.log.warn("redis connection lost; reconnecting in the background", {
        instanceId: this.#o.instanceId,
        connection: role,
        error: errorMessage(error),
      });
    });
    redis.on("ready", () => {
      if (!this.#down.delete(role)) return;
      this.#o.log.info("redis connection restored", {
        instanceId: this.#o.instanceId,
        connection: role,
      });
    });
  }

  async #onSubscriberReady(): Promise<void> {
    const generation = ++this.#subscriberGeneration;
    const channels = [this.#o.controlChannel, ...this.#feeds.keys()];
    try {
      await this.#sub.subscribe(...channels);
    } catch (error) {
      // The connection dropped again; its next "ready" retries.
      this.#o.log.debug("resubscribe failed", { error: errorMessage(error) });
      return;
    }
    if (this.#closed || generation !== this.#subscriberGeneration) return;
    this.#subscriberLive = true;
    this.#checkConnected();
    // Messages published while the connection was down were lost: read them back.
    for (const entry of this.#feeds.values()) entry.feed.resync();
  }

  #checkConnected(): void {
    if (this.#isConnected || !this.#subscriberLive || this.#cmd.status !== "ready") return;
    this.#isConnected = true;
    this.#connected.resolve();
  }

  #disconnected(): void {
    if (!this.#isConnected || this.#closed) return;
    this.#isConnected = false;
    this.#connected = Promise.withResolvers<void>();
    this.#connected.promise.catch(() => {});
  }

  async #startFeed(channel: string, entry: FeedEntry): Promise<void> {
    try {
      await this.#sub.subscribe(channel);
      // The head read after the subscription is confirmed: everything newer reaches the feed.
      const head = await this.#readRange(entry.userId, Number.MAX_SAFE_INTEGER);
      entry.feed.start(head);
    } catch (error) {
      if (this.#feeds.get(channel) === entry) {
        this.#feeds.delete(channel);
        entry.feed.close();
        this.#sub.unsubscribe(channel).catch(() => {});
      }
      throw asUnavailable(error);
    }
  }

  #dropFeedIfUnused(channel: string, entry: FeedEntry): void {
    if (entry.feed.listenerCount > 0 || entry.waiting > 0) return;
    if (this.#feeds.get(channel) !== entry) return;
    this.#feeds.delete(channel);
    entry.feed.close();
    if (!this.#closed) this.#sub.unsubscribe(channel).catch(() => {});
  }

  #onMessage(channel: string, message: string): void {
    if (channel === this.#o.controlChannel) return this.#onControlMessage(message);
    const entry = this.#feeds.get(channel);
    if (!entry) return;
    const first = message.indexOf(" ");
    const second = message.indexOf(" ", first + 1);
    try {
      const seq = Number(message.slice(0, first));
      const epoch = message.slice(first + 1, second);
      const event = decodeEvent(seq, message.slice(second + 1));
      entry.feed.receive({ epoch, event });
    } catch (error) {
      this.#o.log.error("malformed event message", { channel, error: errorMessage(error) });
    }
  }

  #onControlMessage(raw: string): void {
    let message: ControlMessage;
    try {
      message = parseControlMessage(raw);
    } catch (error) {
      this.#o.log.warn("ignored a malformed control message", { error: errorMessage(error) });
      return;
    }
    fanOutControl(this.#controlHandlers, message, { log: this.#o.log });
  }

  #scheduleRenewal(): void {
    this.#renewTimer = this.#o.clock.setTimer(() => {
      if (this.#closed) return;
      this.#renew();
      this.#scheduleRenewal();
    }, Math.max(1, Math.floor(this.#o.connectionTtlMs / 3)));
  }

  /** Pushes the expiry of every connection this instance holds. */
  #renew(): void {
    if (this.#held.size === 0 || this.#cmd.status !== "ready") return;
    const expiry = this.#o.clock.now() + this.#o.connectionTtlMs;
    const pipeline = this.#cmd.pipeline();
    for (const [userId, ids] of this.#held) {
      const conns = this.#keys(userId).conns;
      // XX: a connection released meanwhile (its ZREM already ran) is never brought back.
      pipeline.zadd(conns, "XX", ...[...ids].flatMap((id) => [expiry, id]));
      pipeline.pexpire(conns, this.#o.connectionTtlMs);
    }
    pipeline.exec().catch((error: unknown) => {
      this.#o.log.debug("connection renewal failed", { error: errorMessage(error) });
    });
  }
}

function encodeEvent(event: NewEvent): string {
  return JSON.stringify({
    threadId: event.threadId,
    runId: event.runId,
    name: event.name,
    data: event.data,
    ts: event.ts,
  });
}

function decodeEvent(seq: number, json: string): UserEvent {
  const e = JSON.parse(json);
  return { seq, threadId: e.threadId, runId: e.runId, name: e.name, data: e.data, ts: e.ts };
}

/**
 * Stream entries `[<seq>-0, ["t", ms, "h", threadId, "e", json]]` as events, leaving out those
 * of `purged` threads by their `h` field, before decoding. (Entries written before `h` existed
 * are decoded first.)
 */
function decodeEntries(entries: readonly StreamEntry[], purged: readonly string[]): UserEvent[] {
  const hidden = new Set(purged);
  const events: UserEvent[] = [];
  for (const [id, fields] of entries) {
    const h = fields.indexOf("h");
    if (h !== -1 && hidden.has(fields[h + 1])) continue;
    const event = decodeEvent(Number.parseInt(id, 10), fields[fields.indexOf("e") + 1]);
    if (h === -1 && hidden.has(event.threadId)) continue;
    events.push(event);
  }
  return events;
}

/** The runs hash (flat HGETALL: runId, `<startSeq>:<threadId>`, …), sorted by start. */
function decodeRuns(flat: readonly string[]): ActiveRun[] {
  const runs: ActiveRun[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    const value = flat[i + 1];
    const colon = value.indexOf(":");
    runs.push({
      runId: flat[i],
      threadId: value.slice(colon + 1),
      startSeq: Number(value.slice(0, colon)),
    });
  }
  return sortedRuns(runs);
}

type AppendReply = [1, number, string] | [0, number?] | [2];

/** `append()`'s refusal reply as a {@link PublishResult}. */
function refusal(reply: AppendReply): PublishResult & { published: false } {
  if (reply[0] === 2) return { published: false, reason: "thread_purged" };
  return { published: false, reason: "run_ended", endSeq: reply[1] as number };
}

/** An approval record as the scripts store it (see the module doc's key list). */
function decodeApproval(runId: string, toolCallId: string, json: string): ApprovalRecord {
  const r = JSON.parse(json);
  const record = {
    runId,
    threadId: r.thread,
    toolCallId,
    tool: r.tool,
    expiresAt: new Date(r.exp).toISOString(),
    requestSeq: r.seq,
  };
  if (r.by === undefined) return record;
  const decision = r.reason === undefined
    ? { approved: r.approved, by: r.by, seq: r.rseq }
    : { approved: r.approved, by: r.by, reason: r.reason, seq: r.rseq };
  return { ...record, decision };
}

function unavailable(message: string, cause?: unknown): DependencyUnavailableError {
  return new DependencyUnavailableError("redis", `Redis is unavailable: ${message}`, { cause });
}

/** Maps a failure to reach Redis to DependencyUnavailableError; a script bug stays as it is. */
function asUnavailable(error: unknown): unknown {
  if (error instanceof DependencyUnavailableError) return error;
  if (
    error instanceof Error && error.name === "ReplyError" && !UNAVAILABLE_REPLY.test(error.message)
  ) return error;
  return unavailable(errorMessage(error), error);
}

/** Closes a connection and waits until its socket (and ioredis' timers) are gone. */
async function disconnect(redis: Redis): Promise<void> {
  if (redis.status === "end") return;
  if (redis.status === "reconnecting" || redis.status === "close") {
    // No live socket: disconnect() only cancels the reconnect timer, and arms a destroy timer
    // for the dead socket (disconnectTimeout 0) that no "end" follows; let that timer run.
    redis.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 0));
    return;
  }
  const ended = new Promise<void>((resolve) => redis.once("end", () => resolve()));
  redis.disconnect();
  await ended;
}

function positive(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create Redis engine: "${field}" must be a positive integer, received ${value}`,
    );
  }
  return value;
}

/**
 * A fresh epoch candidate for a script that may have to name a new epoch. Unique without a
 * random draw per call (one was 5% of a publish's cost): 12 random bytes per process, then a
 * counter.
 */
function randomEpoch(): string {
  return `${EPOCH_PREFIX}${(epochCounter++).toString(36)}`;
}

const EPOCH_PREFIX = "r" +
  btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(12))))
    .replaceAll("+", "-").replaceAll("/", "_") +
  ".";
let epochCounter = 0;
