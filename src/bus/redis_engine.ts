/**
 * The shared {@link EventEngine} over Redis: every instance that points at the same Redis (one
 * server, or a Redis Cluster) and key prefix sees the same per-user logs, runs, approvals,
 * connection counts and control messages, so any number of instances behave as one.
 *
 * ## Keys (all under `keyPrefix`; `{u}` is the URI-encoded user id, a cluster hash tag)
 * Every key and channel of a user carries the user's hash tag, so in a Redis Cluster all of a
 * user lives in one slot: one script reaches all of it, and the user's channel is a shard
 * channel of that slot.
 * - `P:{u}:meta` hash `epoch`, `seq`, `server`: the log's incarnation, its counter, and the
 *   script generation that named the epoch (below).
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
 * - `P:{<t>}:gen`: the script generation of the slot whose hash tag is `<t>` (one per slot,
 *   beside the users whose keys hash there; `_key_slot.ts`).
 * - shard channels `P:{u}:events` (one per user) and `P:control` (SPUBLISH / SSUBSCRIBE).
 *
 * ## Epoch: tied to the process that serves the log
 * A seq may be issued twice when the counter is lost or rewound. Lost (keys deleted or expired,
 * Redis restarted empty) shows as a missing meta hash: the next script starts a new log. Rewound
 * (restored from an older snapshot, or a failover to a replica that lagged) does not: the
 * snapshot brings back the old epoch together with the old counter. What changes in every such
 * case is the Redis process behind the log, and the one thing of a process a client can observe
 * without trusting its connection is its script cache, which is neither saved nor replicated.
 *
 * So the log scripts come in generations (`_script_generations.ts`): a random token written into
 * the script's source. A generation is booted by an EVAL of its source, which caches it on the
 * very process that runs it, and is otherwise only ever called by SHA1. Every script stamps the
 * meta with its generation when it names an epoch and compares it on every call: a meta stamped
 * by another generation was written by another process (or before a reset), so the script names
 * a new epoch and keeps the counter (never below the newest retained event), and clients that
 * hold the old epoch get `resumed:false`. A restarted server, a restored snapshot, a promoted
 * replica or another server behind a proxy that kept the client's TCP connection has no
 * generation cached: the first call answers `NOSCRIPT`, and a new generation is booted there.
 * Instances agree on one generation per slot through the slot's marker key, so they do not
 * rename a user's epoch in turn. The check costs a GET and a hash field per call, where the
 * `INFO server` it replaces cost about 4 µs of Redis time per script.
 *
 * What it costs: every restart of Redis, even a clean one that lost nothing, and every `SCRIPT
 * FLUSH`, gives every user a new epoch, so resumes across it answer `resumed:false` (clients
 * reload history). It needs Redis 7 (whose script cache is not replicated). What it cannot see:
 * the same process getting back an older copy of its own data while it runs (`DEBUG RELOAD`,
 * or a primary demoted by a partition, resynced, and promoted again, for slots no instance
 * touched in between); reading the server's `run_id` had the same blind spot.
 *
 * ## Retention: a stream, trimmed exactly, never into a run in flight
 * A stream keyed by seq gives O(log n) reads of "everything after seq N" (XRANGE), compact
 * storage (listpacks, delta-encoded IDs), and built-in trimming; a sorted set would hold a
 * skiplist node and a dict entry per event for the same reads. Both limits stop at the
 * retention floor, the oldest `agent_started` of the active runs (`_engine_rules.ts`). Count:
 * `XTRIM MINID` at the smaller of the floor and `seq - count + 1` after each batch (exact, not
 * `~`, so `retention.count` is a true cap below the floor and `complete`/`resumed` answers are
 * exact; seqs in the stream are contiguous, so this keeps the newest `count`). Age: the scripts
 * drop entries below the floor whose `t` is older than `retention.seconds` (looking at the
 * oldest entries only). The stream key expires `retention.seconds` after the user's last
 * publish while no run is active, and with the meta hash while one is. The meta hash and the
 * runs hash live for at least a week after the last publish or catch-up, so a quiet user's
 * epoch survives.
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
 * ## Batches
 * Publishing is one script call for many events: {@link RedisEngine.publishMany} appends a
 * run's pending events at once, and concurrent publishes for one user on one instance are
 * coalesced (while a call for the user is in flight, the next ones wait and go together). The
 * script assigns the seqs in order and applies every rule per event as a single publish would,
 * and one SPUBLISH carries the batch.
 *
 * ## Live delivery
 * Sharded pub/sub (`_redis_link.ts`): a user's channel is subscribed when the first local
 * listener arrives and unsubscribed when the last leaves, on the node that owns its slot. The
 * publish script SPUBLISHes `<epoch>\n<seq> <json>\n…`. Pub/sub may lose messages, so each
 * user's {@link LiveFeed} tracks the last seq delivered, backfills from the stream on a gap and
 * after its subscription was made again (a reconnect, a failover), and drops duplicates.
 *
 * ## Failing fast
 * Commands never queue while Redis is down: `enableOfflineQueue: false`, `maxRetriesPerRequest:
 * 0`, no resending of unanswered commands, and a command timeout. ioredis reconnects in the
 * background; the engine resubscribes and backfills by itself. Connection errors are logged
 * once per outage.
 *
 * @module
 */
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
import { keySlot, slotTag } from "./_key_slot.ts";
import { LiveFeed } from "./_live_feed.ts";
import type { FeedSubscriber } from "./_live_feed.ts";
import { createRedisLink } from "./_redis_link.ts";
import type { RedisLink, RedisTarget } from "./_redis_link.ts";
import { READ_APPROVALS_SOURCE } from "./_redis_scripts.ts";
import type { GenerationOperation } from "./_redis_scripts.ts";
import { GenerationUnsettledError, ScriptGenerations } from "./_script_generations.ts";
import type { ScriptRunner } from "./_script_generations.ts";
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
  /**
   * Where Redis is: `redis://` or `rediss://` for one server (or a proxy in front of one);
   * `redis+cluster://host:port,host:port` (or `rediss+cluster://`) for a Redis Cluster, given
   * by some of its nodes (user and password, when any, apply to every node).
   */
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
  /** The slot of every key of the user. */
  readonly slot: number;
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
  /** Handshakes that counted a connection and will subscribe next (see acquireConnection). */
  held: number;
  /** The newest event this instance published for the user, to see how far the feed lags. */
  published?: FeedHead;
}

/** Publishes waiting for one user, sent together once the call in flight returns. */
interface Outbox {
  readonly queue: PendingPublish[];
  flying: boolean;
}

interface PendingPublish {
  readonly events: readonly NewEvent[];
  readonly done: PromiseWithResolvers<PublishResult[]>;
}

/** The script that needs no generation, run through ioredis' `defineCommand`. */
interface FixedScripts {
  agentsocketReadApprovals(
    approvals: string,
    purged: string,
    toolCallId: string,
  ): Promise<string[]>;
}

type StreamEntry = [id: string, fields: string[]];

/** Where a feed starts: the log's epoch and head. */
interface FeedHead {
  readonly epoch: string;
  readonly seq: number;
}

/** A user's epoch and counter outlive the last publish or catch-up by at least this long. */
const META_TTL_MS = 7 * 24 * 3600 * 1000;
/**
 * Events coalesced into one script call at most (a run's batch may be bigger and goes whole):
 * a script holds Redis for its whole run, so a batch is kept to about a millisecond.
 */
const MAX_COALESCED_EVENTS = 256;
/**
 * How far (in events) a user's own feed on this instance may lag behind what this instance
 * published for the user before the next publish waits for it, and how long that wait may
 * last. Publishing gets its answer from Redis long before the events come back over pub/sub
 * when delivery is the bottleneck; without this, a fast agent runs ahead and its events wait,
 * stamped, in Redis's output buffer (seconds, in the delivery bench).
 */
const MAX_ECHO_LAG = 128;
const MAX_ECHO_WAIT_MS = 250;
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
  #link: RedisLink;
  #generations: ScriptGenerations;
  #feeds = new Map<string, FeedEntry>();
  #outboxes = new Map<string, Outbox>();
  #controlHandlers = new Set<(message: ControlMessage) => void>();
  /** Connections this instance counted, by user, renewed until released. */
  #held = new Map<string, Set<string>>();
  #renewTimer?: Timer;
  /** Settled while the link is up; replaced by a pending one when it goes down. */
  #connected = Promise.withResolvers<void>();
  #isConnected = false;
  #closed = false;
  #closing?: Promise<void>;

  /**
   * Starts connecting in the background; no call waits for it.
   *
   * @throws {RangeError} for a bad retention, TTL or timeout.
   * @throws {TypeError} for a URL that names no server.
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

    const { target, auth } = parseRedisUrl(options.url);
    const redis: RedisOptions = {
      ...auth,
      enableOfflineQueue: false, // fail fast while Redis is down, never queue
      maxRetriesPerRequest: 0, // a command in flight when the connection drops fails at once
      autoResendUnfulfilledCommands: false, // never run a publish twice
      autoResubscribe: false, // resubscribed by the link, so a backfill can follow
      connectTimeout: Math.max(commandTimeout, 1_000),
      disconnectTimeout: 0, // close() destroys the socket at once; no timer outlives it
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
    };
    this.#link = createRedisLink(target, {
      redis,
      commandTimeoutMs: commandTimeout,
      name: `${this.#o.prefix}:${this.#o.instanceId}`.replace(/[^\w.:-]/g, "_"),
      required: this.#o.controlChannel,
      log: this.#o.log,
      events: {
        message: (channel, message) => this.#onMessage(channel, message),
        resubscribed: (channels) => {
          // Messages published while a subscription was down were lost: read them back.
          for (const channel of channels) this.#feeds.get(channel)?.feed.resync();
        },
        changed: () => this.#checkConnected(),
      },
    });
    const commands = this.#link.commands;
    commands.defineCommand("agentsocketReadApprovals", {
      numberOfKeys: 2,
      lua: READ_APPROVALS_SOURCE,
    });
    this.#generations = new ScriptGenerations(commands as unknown as ScriptRunner, {
      serverOf: (slot) => this.#link.serverOf(slot),
    });
    this.#scheduleRenewal();
  }

  /**
   * Resolves once the command connection is up and the control channel is subscribed (the
   * state in which {@link ping} resolves): at once when they are, else when they come (back).
   * Rejects when the engine is closed first or `signal` aborts.
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

  /** Generations of the log script this instance booted (a Redis restart shows here). */
  get scriptBoots(): number {
    return this.#generations.boots;
  }

  async publish(userId: string, event: NewEvent): Promise<PublishResult> {
    const [result] = await this.publishMany(userId, [event]);
    return result;
  }

  publishMany(userId: string, events: readonly NewEvent[]): Promise<PublishResult[]> {
    if (events.length === 0) return Promise.resolve([]);
    if (this.#closed) return Promise.reject(unavailable("the engine is closed"));
    let outbox = this.#outboxes.get(userId);
    if (!outbox) this.#outboxes.set(userId, outbox = { queue: [], flying: false });
    const done = Promise.withResolvers<PublishResult[]>();
    outbox.queue.push({ events, done });
    if (!outbox.flying) void this.#flush(userId, outbox);
    return done.promise;
  }

  async subscribe(userId: string, listener: EventListener): Promise<EventSubscription> {
    this.#assertOpen();
    if (!this.#link.up) throw unavailable("the subscriber connection is down");
    const channel = this.#keys(userId).channel;
    const joined = this.#feeds.get(channel) ?? this.#openFeed(userId, channel);
    joined.waiting++;
    if (joined.held > 0) joined.held--; // the handshake that held it open subscribes now
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
    const resumable = isResumable(resume);
    const reply = await this.#log(userId, "catchup", [], [
      resumable ? resume.epoch : "",
      resumable ? resume.after : 0,
    ]) as [string, number, number, string[], StreamEntry[], string[], number];
    const [epoch, seq, resumed, flatRuns, entries, purged, first] = reply;
    const activeRuns = decodeRuns(flatRuns);
    const after = resumed === 1 ? (resume as ResumePosition).after : 0;
    let events = decodeEntries(entries, { purged, from: Math.max(first, after + 1) });
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
    const commands = this.#link.commands;
    let starts: (string | null)[];
    let ends: (string | null)[];
    try {
      [starts, ends] = await this.#link.track(Promise.all([
        commands.hmget(keys.runs, ...runIds),
        commands.mget(...runIds.map((runId) => keys.ended(runId))), // one slot: the user's tag
      ]));
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
    await this.#log(userId, "purge", [], [threadId]);
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
    const keys = this.#keys(userId);
    const reply = await this.#log(userId, "request", [keys.ended(runId), keys.approvals(runId)], [
      runId,
      threadId,
      data.toolCallId,
      data.tool,
      options.timeoutMs,
      head,
      `"}}`,
    ]) as [1, number, string, string] | [0, number] | [2] | [3];
    switch (reply[0]) {
      case 3:
        return { published: false, reason: "already_requested" };
      case 2:
        return { published: false, reason: "thread_purged" };
      case 0:
        return { published: false, reason: "run_ended", endSeq: reply[1] };
    }
    const [, seq, epoch, expiresAt] = reply;
    return {
      published: true,
      epoch,
      event: {
        seq,
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
    const keys = this.#keys(userId);
    const reply = await this.#log(userId, "resolve", [keys.ended(runId), keys.approvals(runId)], [
      runId,
      toolCallId,
      approved ? 1 : 0,
      by,
      reason === undefined ? 0 : 1,
      reason ?? "",
      decision.ts,
    ]) as [string, ...(string | number)[]];
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
      const [seconds, micros] = await this.#link.track(this.#link.commands.time());
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  /**
   * Counts the connection; for a user with no live subscription on this instance, it also
   * starts one (SSUBSCRIBE, on the subscriber connection, in parallel) and reads the log's head
   * in the same script, so that the {@link subscribe} a handshake makes next finds it ready:
   * one script call and one round trip less per handshake. Reading the head before the
   * subscription is active is safe here: a handshake reads its catch-up only after
   * `subscribe()` resolved, and an event the feed missed in between shows as a gap at the next
   * one, which the feed backfills.
   */
  async acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean> {
    this.#assertOpen();
    const now = this.#o.clock.now();
    const ttl = this.#o.connectionTtlMs;
    const keys = this.#keys(userId);
    let prefetched: FeedEntry | undefined;
    let head: PromiseWithResolvers<FeedHead> | undefined;
    if (!this.#feeds.has(keys.channel) && this.#link.up) {
      head = Promise.withResolvers();
      head.promise.catch(() => {}); // the feed's start sees it
      prefetched = this.#openFeed(userId, keys.channel, head.promise);
      prefetched.held++;
    }
    let reply: [number, string?, number?];
    try {
      reply = await this.#log(userId, "acquire", [keys.conns], [
        connectionId,
        now + ttl,
        limit,
        ttl,
        head ? 1 : 0,
      ]) as [number, string?, number?];
    } catch (error) {
      head?.reject(error);
      if (prefetched) this.#unhold(keys.channel, prefetched);
      throw error;
    }
    head?.resolve({ epoch: reply[1]!, seq: reply[2]! });
    if (reply[0] !== 1) {
      if (prefetched) this.#unhold(keys.channel, prefetched);
      return false;
    }
    let held = this.#held.get(userId);
    if (!held) this.#held.set(userId, held = new Set());
    held.add(connectionId);
    return true;
  }

  async releaseConnection(userId: string, connectionId: string): Promise<void> {
    const held = this.#held.get(userId);
    if (held?.delete(connectionId) && held.size === 0) this.#held.delete(userId);
    const channel = this.#keys(userId).channel;
    const entry = this.#feeds.get(channel);
    if (entry) this.#unhold(channel, entry); // a handshake that ended before subscribing
    if (this.#closed) return; // close() gave back every connection this instance counted
    try {
      await this.#link.track(this.#link.commands.zrem(this.#keys(userId).conns, connectionId));
    } catch (error) {
      throw asUnavailable(error); // not renewed any more: it expires on its own
    }
  }

  async sendControl(message: ControlMessage): Promise<void> {
    this.#assertOpen();
    try {
      await this.#link.track(
        this.#link.commands.spublish(this.#o.controlChannel, JSON.stringify(message)),
      );
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
    if (!this.#link.up) throw unavailable("the subscriber connection is down");
    try {
      await this.#link.track(this.#link.commands.ping());
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  /** Releases this instance's connections, stops the timers and closes every connection. */
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
    for (const outbox of this.#outboxes.values()) {
      for (const pending of outbox.queue.splice(0)) {
        pending.done.reject(unavailable("the engine was closed"));
      }
    }
    if (this.#held.size > 0 && this.#link.commands.status === "ready") {
      // Give the slots back now rather than letting them expire.
      const pipeline = this.#link.commands.pipeline();
      for (const [userId, ids] of this.#held) pipeline.zrem(this.#keys(userId).conns, ...ids);
      await pipeline.exec().catch(() => {});
    }
    this.#held.clear();
    await this.#link.close();
  }

  // ---- commands -----------------------------------------------------------------------------

  get #fixed(): FixedScripts {
    return this.#link.commands as unknown as FixedScripts;
  }

  /** Sends the user's waiting publishes, as few script calls as the batch limit allows. */
  async #flush(userId: string, outbox: Outbox): Promise<void> {
    outbox.flying = true;
    const channel = this.#keys(userId).channel;
    try {
      while (outbox.queue.length > 0 && !this.#closed) {
        await this.#echoRoom(channel);
        const batch: PendingPublish[] = [outbox.queue.shift()!];
        let size = batch[0].events.length;
        while (
          outbox.queue.length > 0 && size + outbox.queue[0].events.length <= MAX_COALESCED_EVENTS
        ) {
          const next = outbox.queue.shift()!;
          batch.push(next);
          size += next.events.length;
        }
        const events = batch.length === 1 ? batch[0].events : batch.flatMap((p) => p.events);
        try {
          const results = await this.#appendBatch(userId, events);
          this.#notePublished(channel, results);
          let from = 0;
          for (const pending of batch) {
            pending.done.resolve(results.slice(from, from += pending.events.length));
          }
        } catch (error) {
          for (const pending of batch) pending.done.reject(error);
        }
      }
    } finally {
      outbox.flying = false;
      if (outbox.queue.length === 0 && this.#outboxes.get(userId) === outbox) {
        this.#outboxes.delete(userId);
      }
    }
  }

  /** Waits (a little, at most) while the user's feed here lags what this instance published. */
  async #echoRoom(channel: string): Promise<void> {
    const entry = this.#feeds.get(channel);
    const published = entry?.published;
    if (!entry || !published) return;
    const { epoch, seq } = entry.feed.position;
    if (epoch !== published.epoch || published.seq - seq <= MAX_ECHO_LAG) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Real time, not the engine's clock: this paces the network, and must never hang a test.
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, MAX_ECHO_WAIT_MS));
    try {
      await Promise.race([
        entry.feed.whenDelivered(published.epoch, published.seq - MAX_ECHO_LAG),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  #notePublished(channel: string, results: readonly PublishResult[]): void {
    const entry = this.#feeds.get(channel);
    if (!entry) return;
    for (let i = results.length - 1; i >= 0; i--) {
      const result = results[i];
      if (result.published) {
        entry.published = { epoch: result.epoch, seq: result.event.seq };
        return;
      }
    }
  }

  /** Appends events of any runs of one user in one script call (see `append()`). */
  async #appendBatch(userId: string, events: readonly NewEvent[]): Promise<PublishResult[]> {
    const keys = this.#keys(userId);
    const runKeys: string[] = [];
    const slotArgs: string[] = [];
    const slots = new Map<string, number>();
    const tags: string[] = [];
    let body = "";
    for (const event of events) {
      // A slot per run and thread (a run's events share its thread).
      const slotKey = `${event.runId}\n${event.threadId}`;
      let slot = slots.get(slotKey);
      if (slot === undefined) {
        slots.set(slotKey, slot = slots.size + 1);
        slotArgs.push(event.runId, event.threadId);
        runKeys.push(keys.ended(event.runId), keys.approvals(event.runId));
      }
      tags.push(`${KIND_FLAG[runEventKind(event.name)]}${slot}`);
      body += body === "" ? encodeEvent(event) : `\n${encodeEvent(event)}`;
    }
    // One slot (a run's batch): the kinds as one string, not an argument per event.
    const eventArgs = slots.size === 1
      ? [`=${tags.map((tag) => tag.length === 1 ? "." : tag[0]).join("")}`]
      : tags;
    const reply = await this.#log(
      userId,
      "publish",
      runKeys,
      [slots.size, ...slotArgs, ...eventArgs, body],
    ) as (string | number)[];
    const epoch = reply[0] as string;
    const all = reply[1] === 1;
    return events.map((event, i): PublishResult => {
      const code = all ? 1 : reply[2 + 2 * i] as number;
      const value = all ? (reply[2] as number) + i : reply[3 + 2 * i] as number;
      if (code === 1) {
        const { threadId, runId, name, data, ts } = event;
        return { published: true, epoch, event: { seq: value, threadId, runId, name, data, ts } };
      }
      return code === 2
        ? { published: false, reason: "thread_purged" }
        : { published: false, reason: "run_ended", endSeq: value };
    });
  }

  async #readRange(userId: string, after: number): Promise<EventRange> {
    const from = Number.isFinite(after) ? Math.max(0, Math.floor(after)) : 0;
    const reply = await this.#log(userId, "read", [], [from]) as [
      string,
      number,
      number,
      StreamEntry[],
      string[],
      number,
    ];
    const [epoch, seq, complete, entries, purged, first] = reply;
    const events = decodeEntries(entries, { purged, from: Math.max(first, from + 1) });
    return { epoch, seq, complete: complete === 1, events };
  }

  /**
   * Runs an operation of the user's log script (`_redis_scripts.ts`): the marker and the four
   * keys every operation takes, then `extraKeys`; the arguments every operation takes, then
   * `args`.
   */
  async #log(
    userId: string,
    op: GenerationOperation,
    extraKeys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    this.#assertOpen();
    const keys = this.#keys(userId);
    try {
      return await this.#link.track(this.#generations.run(keys.slot, op, {
        marker: `${this.#o.prefix}:{${slotTag(keys.slot)}}:gen`,
        keys: [keys.meta, keys.log, keys.runs, keys.purged, ...extraKeys],
        args: [
          randomEpoch(),
          this.#o.clock.now(),
          this.#o.retention.count,
          this.#o.retention.seconds * 1000,
          META_TTL_MS,
          keys.channel,
          ...args,
        ],
      }));
    } catch (error) {
      throw asUnavailable(error);
    }
  }

  async #readApprovals(
    userId: string,
    runId: string,
    toolCallId: string,
  ): Promise<ApprovalRecord[]> {
    this.#assertOpen();
    const keys = this.#keys(userId);
    let flat: string[];
    try {
      flat = await this.#link.track(this.#fixed.agentsocketReadApprovals(
        keys.approvals(runId),
        keys.purged,
        toolCallId,
      ));
    } catch (error) {
      throw asUnavailable(error);
    }
    const records: ApprovalRecord[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      records.push(decodeApproval(runId, flat[i], flat[i + 1]));
    }
    return records;
  }

  #keys(userId: string): UserKeys {
    const tag = encodeURIComponent(userId);
    const base = `${this.#o.prefix}:{${tag}}`;
    return {
      meta: `${base}:meta`,
      log: `${base}:log`,
      runs: `${base}:runs`,
      purged: `${base}:purged`,
      conns: `${base}:conns`,
      channel: `${base}:events`,
      slot: keySlot(`{${tag}}`),
      ended: (runId) => `${base}:ended:${runId}`,
      approvals: (runId) => `${base}:approvals:${runId}`,
    };
  }

  #assertOpen(): void {
    if (this.#closed) throw unavailable("the engine is closed");
  }

  // ---- connections and subscriptions --------------------------------------------------------

  #checkConnected(): void {
    if (this.#closed) return;
    const up = this.#link.up;
    if (up && !this.#isConnected) {
      this.#isConnected = true;
      this.#connected.resolve();
    } else if (!up && this.#isConnected) {
      this.#isConnected = false;
      this.#connected = Promise.withResolvers<void>();
      this.#connected.promise.catch(() => {});
    }
  }

  /** Creates a user's feed; it goes live once subscribed and its starting head is known. */
  #openFeed(userId: string, channel: string, head?: Promise<FeedHead>): FeedEntry {
    const entry: FeedEntry = {
      userId,
      feed: new LiveFeed({
        userId,
        readAfter: (after) => this.#readRange(userId, after),
        clock: this.#o.clock,
        log: this.#o.log,
      }),
      ready: Promise.resolve(),
      waiting: 0,
      held: 0,
    };
    this.#feeds.set(channel, entry); // messages reach it from the first one on
    entry.ready = this.#startFeed(channel, entry, head);
    entry.ready.catch(() => {}); // each waiter sees the rejection
    return entry;
  }

  async #startFeed(channel: string, entry: FeedEntry, head?: Promise<FeedHead>): Promise<void> {
    try {
      await this.#link.subscribe(channel);
      // The head read after the subscription is confirmed (or beside it, for a handshake):
      // everything newer reaches the feed.
      const start = head ? await head : await this.#head(entry.userId);
      entry.feed.start(start);
    } catch (error) {
      if (this.#feeds.get(channel) === entry) {
        this.#feeds.delete(channel);
        entry.feed.close();
        this.#link.unsubscribe(channel);
      }
      throw asUnavailable(error);
    }
  }

  async #head(userId: string): Promise<FeedHead> {
    const [epoch, seq] = await this.#log(userId, "head", [], []) as [string, number];
    return { epoch, seq };
  }

  /** Gives back a handshake's hold on a feed. */
  #unhold(channel: string, entry: FeedEntry): void {
    if (entry.held === 0) return;
    entry.held--;
    this.#dropFeedIfUnused(channel, entry);
  }

  #dropFeedIfUnused(channel: string, entry: FeedEntry): void {
    if (entry.feed.listenerCount > 0 || entry.waiting > 0 || entry.held > 0) return;
    if (this.#feeds.get(channel) !== entry) return;
    this.#feeds.delete(channel);
    entry.feed.close();
    if (!this.#closed) this.#link.unsubscribe(channel);
  }

  #onMessage(channel: string, message: string): void {
    if (channel === this.#o.controlChannel) return this.#onControlMessage(message);
    const entry = this.#feeds.get(channel);
    if (!entry) return;
    try {
      // `<epoch> <first seq>\n<JSON>\n<JSON>…` (JSON never holds a raw newline).
      let at = message.indexOf("\n");
      const space = message.indexOf(" ");
      const epoch = message.slice(0, space);
      let seq = Number(message.slice(space + 1, at));
      while (at !== -1) {
        const next = message.indexOf("\n", at + 1);
        const event = decodeEvent(seq++, message.slice(at + 1, next === -1 ? undefined : next));
        entry.feed.receive({ epoch, event });
        at = next;
      }
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
    const commands = this.#link.commands;
    if (this.#held.size === 0 || commands.status !== "ready") return;
    const expiry = this.#o.clock.now() + this.#o.connectionTtlMs;
    const pipeline = commands.pipeline();
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

/**
 * Reads the engine's URL: one server, or a cluster (`redis+cluster://` / `rediss+cluster://`
 * with a comma list of `host:port`), with the user and password of the URL.
 *
 * @throws {TypeError} when a cluster URL names no node.
 */
export function parseRedisUrl(
  url: string,
): { readonly target: RedisTarget; readonly auth: RedisOptions } {
  const match = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]*)/i.exec(url);
  if (!match) return { target: { url }, auth: {} };
  const [, scheme, userinfo, hosts] = match;
  const clusterNodes = hosts.split(",").map((h) => h.trim()).filter((h) => h.length > 0);
  if (clusterNodes.length === 0 || clusterNodes.some((h) => !/:\d+$/.test(h))) {
    throw new TypeError(
      `Cannot connect to Redis Cluster: expected "host:port" nodes, received "${hosts}"`,
    );
  }
  const auth: { username?: string; password?: string; tls?: Record<string, never> } = {};
  if (userinfo) {
    const colon = userinfo.indexOf(":");
    const user = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon));
    if (colon !== -1) auth.password = decodeURIComponent(userinfo.slice(colon + 1));
    if (user) auth.username = user;
  }
  if (scheme.toLowerCase() === "rediss") auth.tls = {};
  return { target: { clusterNodes }, auth };
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
 * Stream entries as events, from seq `from` on, leaving out those of `purged` threads by their
 * thread id before decoding. An entry `<first seq>-<ms>` holds `n` events: `h` their thread ids
 * (one for all, or one per event) and `b` their JSON, newline-separated; an entry `<seq>-0` is
 * one event as an earlier version wrote it (`t <ms> [h <thread id>] e <JSON>`).
 */
function decodeEntries(
  entries: readonly StreamEntry[],
  options: { readonly purged: readonly string[]; readonly from: number },
): UserEvent[] {
  const hidden = new Set(options.purged);
  const events: UserEvent[] = [];
  for (const [id, fields] of entries) {
    const first = Number.parseInt(id, 10);
    if (id.endsWith("-0")) {
      if (first < options.from) continue;
      const h = fields.indexOf("h");
      if (h !== -1 && hidden.has(fields[h + 1])) continue;
      const event = decodeEvent(first, fields[fields.indexOf("e") + 1]);
      if (h === -1 && hidden.has(event.threadId)) continue;
      events.push(event);
      continue;
    }
    const count = Number(fields[fields.indexOf("n") + 1]);
    if (first + count - 1 < options.from) continue;
    const threads = fields[fields.indexOf("h") + 1].split("\n");
    const lines = fields[fields.indexOf("b") + 1].split("\n");
    for (let i = 0; i < count; i++) {
      const seq = first + i;
      if (seq < options.from || hidden.has(threads.length === 1 ? threads[0] : threads[i])) {
        continue;
      }
      events.push(decodeEvent(seq, lines[i]));
    }
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
  if (error instanceof GenerationUnsettledError) return unavailable(error.message, error);
  return unavailable(errorMessage(error), error);
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
