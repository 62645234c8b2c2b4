/**
 * The shared {@link EventEngine} over Redis: every instance that points at the same Redis and
 * key prefix sees the same per-user logs, runs, connection counts and control messages
 * (SPEC §6).
 *
 * ## Keys (all under `keyPrefix`; `{u}` is the URI-encoded user id, a cluster hash tag)
 * - `P:{u}:meta` hash `epoch`, `seq`, `server`: the log's incarnation, its counter, and the
 *   `run_id` of the Redis server that named the epoch.
 * - `P:{u}:log` stream: one entry per event, ID `<seq>-0`, fields `t` (append time, ms, from
 *   the engine's clock) and `e` (the event as JSON, without its seq).
 * - `P:{u}:runs` hash runId → `<startSeq>:<threadId>`: the runs in flight.
 * - `P:{u}:ended:<runId>`: the terminal seq of an ended run, for `retention.seconds`.
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
 * client read on connect. Measured here (Redis 7.0 on a busy 2-core machine, the publish script,
 * 20 000 calls per run, server time from INFO commandstats): 14–23 µs per publish with `run_id`
 * passed in, 20–33 µs with INFO in the script, so 6–12 µs more (+40–55 %): at most some 12 %
 * of one Redis core at 10 000 events/s, far above this product's load. In exchange there is no
 * cached value to go stale: a client-side `run_id` must be re-read after every reconnect before
 * the first script runs, and is simply wrong when a proxy (Envoy, a cloud endpoint) or Sentinel
 * keeps the client's TCP connection while the server behind it changes; then a restored counter
 * would reissue seqs under the old epoch, the one failure this must prevent. The cost: every
 * restart of Redis, even a clean one that lost nothing, gives every user a new epoch, so
 * resumes across it answer `resumed:false` (clients reload history). It needs INFO to be allowed
 * (some managed services rename it; then every script fails loudly).
 *
 * ## Retention: a stream, trimmed exactly
 * A stream keyed by seq gives O(log n) reads of "everything after seq N" (XRANGE), compact
 * storage (listpacks, delta-encoded IDs), and built-in trimming; a sorted set would hold a
 * skiplist node and a dict entry per event for the same reads. Count: `XADD MAXLEN n` (exact,
 * not `~`, so `retention.count` is a true cap and `complete`/`resumed` answers are exact; no
 * measurable difference from `~` in the publish script). Age: the scripts drop entries whose `t` is older than
 * `retention.seconds` (looking at the oldest entries only), and the stream key expires
 * `retention.seconds` after the user's last publish. The meta hash and the runs hash live for
 * at least a week after the last publish or catch-up, so a quiet user's epoch survives.
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
import { TERMINAL_EVENT_NAMES } from "../protocol/mod.ts";
import type { ActiveRun, ResumePosition } from "../protocol/mod.ts";
import { LiveFeed } from "./_live_feed.ts";
import type { FeedRange, FeedSubscriber } from "./_live_feed.ts";
import {
  ACQUIRE_SOURCE,
  CATCH_UP_SOURCE,
  defineScript,
  PUBLISH_SOURCE,
  READ_AFTER_SOURCE,
  runScript,
} from "./_redis_scripts.ts";
import type { RedisScript } from "./_redis_scripts.ts";
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

interface Scripts {
  readonly publish: RedisScript;
  readonly catchUp: RedisScript;
  readonly readAfter: RedisScript;
  readonly acquire: RedisScript;
}

interface UserKeys {
  readonly meta: string;
  readonly log: string;
  readonly runs: string;
  readonly conns: string;
  readonly channel: string;
  ended(runId: string): string;
}

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

  #prefix: string;
  #instanceId: string;
  #retention: EventRetention;
  #clock: Clock;
  #log: Logger;
  #connectionTtlMs: number;
  #cmd: Redis;
  #sub: Redis;
  #scripts: Promise<Scripts>;
  #controlChannel: string;
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
    this.#retention = { ...options.retention };
    this.#prefix = options.keyPrefix;
    this.#instanceId = options.instanceId;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? silentLogger;
    this.#connectionTtlMs = positive("connectionTtlMs", options.connectionTtlMs ?? 30_000);
    const commandTimeout = positive("commandTimeoutMs", options.commandTimeoutMs ?? 2_000);
    this.#controlChannel = `${this.#prefix}:control`;
    this.#connected.promise.catch(() => {}); // a close before connecting is not an error

    const name = `${this.#prefix}:${this.#instanceId}`.replace(/[^\w.:-]/g, "_");
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
      [PUBLISH_SOURCE, CATCH_UP_SOURCE, READ_AFTER_SOURCE, ACQUIRE_SOURCE].map(defineScript),
    ).then(([publish, catchUp, readAfter, acquire]) => ({ publish, catchUp, readAfter, acquire }));
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
    const keys = this.#keys(userId);
    const kind = event.name === "agent_started"
      ? "s"
      : TERMINAL_EVENT_NAMES.has(event.name)
      ? "e"
      : "";
    const reply = await this.#run("publish", [
      keys.meta,
      keys.log,
      keys.runs,
      keys.ended(event.runId),
    ], [
      randomEpoch(),
      this.#clock.now(),
      this.#retention.count,
      this.#retention.seconds * 1000,
      META_TTL_MS,
      keys.channel,
      event.runId,
      event.threadId,
      kind,
      encodeEvent(event),
    ]) as [number, number, string?];
    if (reply[0] === 0) return { published: false, reason: "run_ended", endSeq: reply[1] };
    const stored: UserEvent = {
      seq: reply[1],
      threadId: event.threadId,
      runId: event.runId,
      name: event.name,
      data: event.data,
      ts: event.ts,
    };
    return { published: true, epoch: reply[2]!, event: stored };
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
          clock: this.#clock,
          log: this.#log,
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
    const resumable = resume !== undefined && typeof resume.epoch === "string" &&
      resume.epoch !== "" && Number.isSafeInteger(resume.after) && resume.after >= 0;
    const reply = await this.#run("catchUp", [keys.meta, keys.log, keys.runs], [
      randomEpoch(),
      this.#clock.now(),
      this.#retention.seconds * 1000,
      META_TTL_MS,
      resumable ? resume.epoch : "",
      resumable ? resume.after : 0,
    ]) as [string, number, number, string[], StreamEntry[]];
    const [epoch, seq, resumed, flatRuns, entries] = reply;
    const activeRuns = decodeRuns(flatRuns);
    let events = entries.map(decodeEntry);
    if (resumed !== 1) {
      const starts = new Map(activeRuns.map((run) => [run.runId, run.startSeq]));
      events = events.filter((e) => e.seq >= (starts.get(e.runId) ?? Infinity));
    }
    return { epoch, seq, activeRuns, resumed: resumed === 1, events };
  }

  async readAfter(userId: string, after: number): Promise<EventRange> {
    const range = await this.#readRange(userId, after);
    return range;
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

  async acquireConnection(userId: string, connectionId: string, limit: number): Promise<boolean> {
    const now = this.#clock.now();
    const ttl = this.#connectionTtlMs;
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
      await this.#cmd.publish(this.#controlChannel, JSON.stringify(message));
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

  async #readRange(userId: string, after: number): Promise<FeedRange & { complete: boolean }> {
    const keys = this.#keys(userId);
    const from = Number.isFinite(after) ? Math.max(0, Math.floor(after)) : 0;
    const reply = await this.#run("readAfter", [keys.meta, keys.log, keys.runs], [
      randomEpoch(),
      this.#clock.now(),
      this.#retention.seconds * 1000,
      META_TTL_MS,
      from,
    ]) as [string, number, number, StreamEntry[]];
    const [epoch, seq, complete, entries] = reply;
    return { epoch, seq, complete: complete === 1, events: entries.map(decodeEntry) };
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
    const base = `${this.#prefix}:{${encodeURIComponent(userId)}}`;
    return {
      meta: `${base}:meta`,
      log: `${base}:log`,
      runs: `${base}:runs`,
      conns: `${base}:conns`,
      channel: `${base}:events`,
      ended: (runId) => `${base}:ended:${runId}`,
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
      this.#log.warn("redis connection lost; reconnecting in the background", {
        instanceId: this.#instanceId,
        connection: role,
        error: errorMessage(error),
      });
    });
    redis.on("ready", () => {
      if (!this.#down.delete(role)) return;
      this.#log.info("redis connection restored", {
        instanceId: this.#instanceId,
        connection: role,
      });
    });
  }

  async #onSubscriberReady(): Promise<void> {
    const generation = ++this.#subscriberGeneration;
    const channels = [this.#controlChannel, ...this.#feeds.keys()];
    try {
      await this.#sub.subscribe(...channels);
    } catch (error) {
      // The connection dropped again; its next "ready" retries.
      this.#log.debug("resubscribe failed", { error: errorMessage(error) });
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
    if (channel === this.#controlChannel) return this.#onControlMessage(message);
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
      this.#log.error("malformed event message", { channel, error: errorMessage(error) });
    }
  }

  #onControlMessage(raw: string): void {
    let message: ControlMessage;
    try {
      const parsed = JSON.parse(raw);
      if (
        parsed?.type !== "cancel" || typeof parsed.userId !== "string" ||
        typeof parsed.runId !== "string"
      ) throw new TypeError("not a cancel message");
      message = { type: "cancel", userId: parsed.userId, runId: parsed.runId };
    } catch (error) {
      this.#log.warn("ignored a malformed control message", { error: errorMessage(error) });
      return;
    }
    for (const handler of [...this.#controlHandlers]) {
      try {
        handler(message);
      } catch (error) {
        this.#log.error("control handler failed", { error: errorMessage(error) });
      }
    }
  }

  #scheduleRenewal(): void {
    this.#renewTimer = this.#clock.setTimer(() => {
      if (this.#closed) return;
      this.#renew();
      this.#scheduleRenewal();
    }, Math.max(1, Math.floor(this.#connectionTtlMs / 3)));
  }

  /** Pushes the expiry of every connection this instance holds. */
  #renew(): void {
    if (this.#held.size === 0 || this.#cmd.status !== "ready") return;
    const expiry = this.#clock.now() + this.#connectionTtlMs;
    const pipeline = this.#cmd.pipeline();
    for (const [userId, ids] of this.#held) {
      const conns = this.#keys(userId).conns;
      // XX: a connection released meanwhile (its ZREM already ran) is never brought back.
      pipeline.zadd(conns, "XX", ...[...ids].flatMap((id) => [expiry, id]));
      pipeline.pexpire(conns, this.#connectionTtlMs);
    }
    pipeline.exec().catch((error: unknown) => {
      this.#log.debug("connection renewal failed", { error: errorMessage(error) });
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

/** A stream entry `[<seq>-0, ["t", ms, "e", json]]` as an event. */
function decodeEntry([id, fields]: StreamEntry): UserEvent {
  const json = fields[fields.indexOf("e") + 1];
  return decodeEvent(Number.parseInt(id, 10), json);
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
  return runs.sort((a, b) => a.startSeq - b.startSeq);
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
