/**
 * The Redis engine's connections: one for commands and scripts, and subscriber connections for
 * sharded pub/sub (`SSUBSCRIBE`), to one Redis server or to every primary of a Redis Cluster
 * that owns a subscribed channel's slot. Every channel the engine uses (a user's events, the
 * control channel) is a shard channel, so a message goes only to the shard that owns its slot,
 * and the same code serves one server and a cluster.
 *
 * What the engine needs from pub/sub is to know when a channel's subscription may have lost
 * messages: after its connection came back, or after its slot moved to another node (a
 * failover). The link subscribes the channel again and, once the server confirmed it, reports
 * the channel through `onResubscribed`, so the engine can read back what was lost. ioredis'
 * own cluster subscribers resubscribe without telling when that is done, so the link keeps its
 * own connection per node.
 *
 * Commands never queue while Redis is down (`enableOfflineQueue: false`), a command in flight
 * when a connection drops fails (never resent), and a cluster client does not retry after a
 * connection loss or `CLUSTERDOWN` (only `MOVED`, `ASK` and `TRYAGAIN`, which mean the command
 * did not run): a script that publishes must never run twice.
 *
 * @module
 */
import { Cluster, Redis } from "ioredis";
import type { ClusterOptions, RedisOptions } from "ioredis";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import { keySlot } from "./_key_slot.ts";

/** Where Redis is: one server's URL, or a cluster's seed nodes. */
export type RedisTarget =
  | { readonly url: string }
  | { readonly clusterNodes: readonly string[] };

/** What the link tells the engine. */
export interface RedisLinkEvents {
  /** A message on a subscribed channel. */
  message(channel: string, message: string): void;
  /**
   * `channels` are subscribed again (confirmed) after their connection came back or their
   * slot moved: messages published meanwhile may have been lost.
   */
  resubscribed(channels: readonly string[]): void;
  /** The link's state may have changed (see {@link RedisLink.up}). */
  changed(): void;
}

/** Options of {@link createRedisLink}. */
export interface RedisLinkOptions {
  /** Options of every connection (the fail-fast settings). */
  readonly redis: RedisOptions;
  /**
   * How long commands may go unanswered before the command connection is cut (so that they
   * fail); see {@link RedisLink.track}.
   */
  readonly commandTimeoutMs: number;
  /** Connection names start with it. */
  readonly name: string;
  /** A channel every subscriber must hold for the link to be up (the control channel). */
  readonly required: string;
  readonly log: Logger;
  readonly events: RedisLinkEvents;
}

/** Commands, and sharded subscriptions that report when they had to be made again. */
export interface RedisLink {
  /** The connection (or cluster client) for commands and scripts. */
  readonly commands: Redis | Cluster;
  /** Whether this is a cluster. */
  readonly cluster: boolean;
  /** True while commands can be sent and the required channel is subscribed. */
  readonly up: boolean;
  /** Subscribes a shard channel; resolves once the server confirmed it. */
  subscribe(channel: string): Promise<void>;
  /** Drops a channel; idempotent. */
  unsubscribe(channel: string): void;
  /** The server that owns `slot`, as the client knows it (for script generations). */
  serverOf(slot: number): string;
  /**
   * Watches a command sent on {@link commands}: when commands are out and none was answered
   * for `commandTimeoutMs`, the connection is cut and they fail. One timer for the engine
   * instead of ioredis' `commandTimeout`, which arms a timer per command (about a quarter of a
   * command's client CPU).
   */
  track<T>(command: Promise<T>): Promise<T>;
  /** Closes every connection. */
  close(): Promise<void>;
}

/** Connects to `target`: one server, or a cluster. */
export function createRedisLink(target: RedisTarget, options: RedisLinkOptions): RedisLink {
  return "url" in target
    ? new ServerLink(target.url, options)
    : new ClusterLink(target.clusterNodes, options);
}

/**
 * Cuts a connection whose commands go unanswered: checks four times per timeout, in real time
 * (it measures the network, not the engine's clock).
 */
class CommandWatchdog {
  #inFlight = 0;
  #since = 0;
  #timer?: ReturnType<typeof setInterval>;
  #timeoutMs: number;
  #cut: () => void;

  constructor(timeoutMs: number, cut: () => void) {
    this.#timeoutMs = timeoutMs;
    this.#cut = cut;
  }

  track<T>(command: Promise<T>): Promise<T> {
    if (this.#inFlight++ === 0) {
      this.#since = performance.now();
      this.#timer ??= setInterval(() => this.#check(), Math.max(50, this.#timeoutMs / 4));
    }
    return command.finally(() => {
      this.#since = performance.now();
      if (--this.#inFlight === 0) this.stop();
    });
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    if (this.#inFlight > 0 && performance.now() - this.#since > this.#timeoutMs) {
      this.#since = performance.now();
      this.#cut();
    }
  }
}

/** A subscriber connection and the channels it holds. */
class Subscriber {
  readonly redis: Redis;
  readonly channels = new Set<string>();
  /** True once the channels held at the last (re)connect are confirmed, until it drops. */
  live = false;
  #round = 0;
  #liveWaiters: PromiseWithResolvers<void>[] = [];
  #o: RedisLinkOptions;

  constructor(redis: Redis, options: RedisLinkOptions) {
    this.redis = redis;
    this.#o = options;
    redis.on("ready", () => void this.#resubscribe());
    redis.on("close", () => {
      // Those waiting for the connection to come up fail fast; a later try may succeed.
      for (const waiter of this.#liveWaiters.splice(0)) {
        waiter.reject(new Error("the subscriber connection closed"));
      }
      if (!this.live) return;
      this.live = false;
      options.events.changed();
    });
    redis.on("smessage", (channel: string, message: string) => {
      if (this.channels.has(channel)) options.events.message(channel, message);
    });
  }

  /** Subscribes one channel on this connection (once it is live, with the others). */
  async add(channel: string): Promise<void> {
    this.channels.add(channel);
    if (!this.live) {
      // The next (re)connect subscribes it with the rest; wait for that, or fail fast.
      if (this.redis.status !== "connecting" && this.redis.status !== "connect") {
        throw new Error(`the subscriber connection is ${this.redis.status}`);
      }
      const waiter = Promise.withResolvers<void>();
      this.#liveWaiters.push(waiter);
      try {
        await waiter.promise;
      } catch (error) {
        this.channels.delete(channel);
        throw error;
      }
      if (!this.channels.has(channel)) throw new Error("unsubscribed meanwhile");
      return;
    }
    await this.redis.ssubscribe(channel);
  }

  remove(channel: string): void {
    if (!this.channels.delete(channel)) return;
    if (this.redis.status === "ready") this.redis.sunsubscribe(channel).catch(() => {});
  }

  async #resubscribe(): Promise<void> {
    const round = ++this.#round;
    const channels = [...this.channels];
    try {
      // One command per channel: in a cluster, one SSUBSCRIBE takes channels of one slot only.
      await Promise.all(channels.map((channel) => this.redis.ssubscribe(channel)));
    } catch (error) {
      this.#o.log.debug("resubscribe failed", { error: errorMessage(error) });
      return; // the connection dropped again; its next "ready" retries
    }
    if (round !== this.#round || this.redis.status !== "ready") return;
    this.live = true;
    for (const waiter of this.#liveWaiters.splice(0)) waiter.resolve();
    this.#o.events.changed();
    this.#o.events.resubscribed(channels);
  }

  async close(): Promise<void> {
    this.live = false;
    for (const waiter of this.#liveWaiters.splice(0)) waiter.reject(new Error("closed"));
    await disconnect(this.redis);
  }
}

/** One Redis server (or a proxy in front of one). */
class ServerLink implements RedisLink {
  readonly commands: Redis;
  readonly cluster = false;
  #sub: Subscriber;
  #o: RedisLinkOptions;
  #watchdog: CommandWatchdog;

  constructor(url: string, options: RedisLinkOptions) {
    this.#o = options;
    this.commands = new Redis(url, { ...options.redis, connectionName: `${options.name}:cmd` });
    this.#watchdog = new CommandWatchdog(options.commandTimeoutMs, () => {
      options.log.warn("redis commands unanswered; reconnecting", { connection: "command" });
      this.commands.disconnect(true);
    });
    this.commands.on("ready", () => options.events.changed());
    this.commands.on("close", () => options.events.changed());
    this.#sub = new Subscriber(
      new Redis(url, { ...options.redis, connectionName: `${options.name}:sub` }),
      options,
    );
    this.#sub.channels.add(options.required);
    watchErrors(this.commands, "command", options);
    watchErrors(this.#sub.redis, "subscriber", options);
  }

  get up(): boolean {
    return this.commands.status === "ready" && this.#sub.live;
  }

  subscribe(channel: string): Promise<void> {
    return this.#sub.add(channel);
  }

  unsubscribe(channel: string): void {
    if (channel !== this.#o.required) this.#sub.remove(channel);
  }

  serverOf(): string {
    return "";
  }

  track<T>(command: Promise<T>): Promise<T> {
    return this.#watchdog.track(command);
  }

  async close(): Promise<void> {
    this.#watchdog.stop();
    await Promise.all([disconnect(this.commands), this.#sub.close()]);
  }
}

/**
 * A Redis Cluster: a cluster client for commands, and a subscriber connection per primary that
 * owns a subscribed channel's slot, moved when the slot moves.
 */
class ClusterLink implements RedisLink {
  readonly commands: Cluster;
  readonly cluster = true;
  #o: RedisLinkOptions;
  #subs = new Map<string, Subscriber>();
  /** Every wanted channel and the node it is subscribed on. */
  #owner = new Map<string, string>();
  #slots = new Map<string, number>();
  #watchdog: CommandWatchdog;
  #closed = false;

  constructor(nodes: readonly string[], options: RedisLinkOptions) {
    this.#o = options;
    const { connectTimeout } = options.redis;
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: false,
      enableReadyCheck: true,
      scaleReads: "master",
      maxRedirections: 16,
      retryDelayOnFailover: 0, // a command cut by a lost connection fails: it may have run
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: Math.max(connectTimeout ?? 1_000, 1_000),
      slotsRefreshInterval: 1_000, // a failover is noticed within a second
      clusterRetryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2_000),
      redisOptions: {
        ...withoutClusterFields(options.redis),
        connectionName: `${options.name}:cmd`,
      },
    };
    this.commands = new Cluster(nodes.map(parseNode), clusterOptions);
    this.#watchdog = new CommandWatchdog(options.commandTimeoutMs, () => {
      options.log.warn("redis commands unanswered; reconnecting", { connection: "command" });
      // Cut every node's connection: the cluster client reconnects and reads the slots again.
      for (const node of this.commands.nodes()) node.disconnect(true);
    });
    this.commands.on("ready", () => {
      this.#connectPrimaries();
      this.#rebalance();
      options.events.changed();
    });
    this.commands.on("refresh", () => {
      this.#connectPrimaries();
      this.#rebalance();
    });
    this.commands.on("close", () => options.events.changed());
    this.commands.on("+node", (node: Redis) => {
      node.on("ready", () => options.events.changed());
      node.on("close", () => options.events.changed());
    });
    watchErrors(this.commands, "command", options);
    this.#owner.set(options.required, "");
  }

  /**
   * Up while the cluster client is ready, every primary's connection is, and the control
   * channel is subscribed: with `enableOfflineQueue: false` a command to a primary whose
   * connection is not ready fails at once, so a failover shows here until the replica took
   * over.
   */
  get up(): boolean {
    if (this.commands.status !== "ready") return false;
    if (this.commands.nodes("master").some((node) => node.status !== "ready")) return false;
    const node = this.#owner.get(this.#o.required);
    return node !== undefined && node !== "" && this.#subs.get(node)?.live === true;
  }

  async subscribe(channel: string): Promise<void> {
    if (this.commands.status !== "ready") throw new Error("the cluster is not ready");
    this.#owner.set(channel, "");
    for (let attempt = 0;; attempt++) {
      const node = this.#nodeOf(channel);
      if (!node) throw new Error(`no node serves the slot of ${channel}`);
      const sub = this.#subscriber(node);
      this.#owner.set(channel, node);
      try {
        await sub.add(channel);
        return;
      } catch (error) {
        if (this.#owner.get(channel) === undefined) throw error; // unsubscribed meanwhile
        if (attempt >= 2 || !/^MOVED|^ASK/.test(errorMessage(error))) throw error;
        sub.channels.delete(channel);
        await new Promise<void>((resolve) => this.commands.refreshSlotsCache(() => resolve()));
      }
    }
  }

  unsubscribe(channel: string): void {
    if (channel === this.#o.required) return;
    const node = this.#owner.get(channel);
    this.#owner.delete(channel);
    this.#slots.delete(channel);
    if (node) this.#subs.get(node)?.remove(channel);
    if (node) this.#dropIfIdle(node);
  }

  serverOf(slot: number): string {
    return this.commands.slots[slot]?.[0] ?? "";
  }

  track<T>(command: Promise<T>): Promise<T> {
    return this.#watchdog.track(command);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchdog.stop();
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    await Promise.all([disconnect(this.commands), ...subs.map((sub) => sub.close())]);
  }

  /**
   * Connects every primary now: the cluster client connects a node on its first command and,
   * without an offline queue, fails the commands sent to it while it connects.
   */
  #connectPrimaries(): void {
    // Not while the client itself connects: a node connected then breaks its start.
    if (this.commands.status !== "ready") return;
    for (const node of this.commands.nodes("master")) {
      if (node.status === "wait") node.connect().catch(() => {}); // errors: the node's "error"
    }
  }

  #nodeOf(channel: string): string | undefined {
    let slot = this.#slots.get(channel);
    if (slot === undefined) this.#slots.set(channel, slot = keySlot(channel));
    return this.commands.slots[slot]?.[0];
  }

  #subscriber(node: string): Subscriber {
    let sub = this.#subs.get(node);
    if (!sub) {
      const [host, port] = splitNode(node);
      const redis = new Redis({
        ...this.#o.redis,
        host,
        port,
        connectionName: `${this.#o.name}:sub`,
      });
      watchErrors(redis, `subscriber ${node}`, this.#o);
      sub = new Subscriber(redis, this.#o);
      this.#subs.set(node, sub);
    }
    return sub;
  }

  /**
   * After the slot map changed: moves each channel whose slot another node now owns, and
   * reports it once the new node confirmed it. Runs at every refresh; does nothing when no
   * owner changed.
   */
  #rebalance(): void {
    if (this.#closed || this.commands.status !== "ready") return;
    for (const [channel, owner] of this.#owner) {
      const node = this.#nodeOf(channel);
      if (!node || node === owner) continue;
      if (owner) {
        this.#subs.get(owner)?.remove(channel);
        this.#dropIfIdle(owner);
      }
      this.#owner.set(channel, node);
      const sub = this.#subscriber(node);
      const wasLive = sub.live;
      sub.add(channel).then(() => {
        // Subscribed by a connection that was live already: report it here (a connection
        // that came up reports every channel it holds by itself).
        if (wasLive && this.#owner.get(channel) === node) this.#o.events.resubscribed([channel]);
        this.#o.events.changed();
      }, (error) => {
        this.#o.log.debug("moving a subscription failed; the next refresh retries", {
          channel,
          error: errorMessage(error),
        });
        if (this.#owner.get(channel) === node) this.#owner.set(channel, "");
      });
    }
  }

  #dropIfIdle(node: string): void {
    const sub = this.#subs.get(node);
    if (!sub || sub.channels.size > 0) return;
    this.#subs.delete(node);
    void sub.close();
  }
}

/** Logs each connection's loss once per outage, and its return. */
function watchErrors(redis: Redis | Cluster, role: string, options: RedisLinkOptions): void {
  let down = false;
  redis.on("error", (error: Error) => {
    if (down) return;
    down = true;
    options.log.warn("redis connection lost; reconnecting in the background", {
      connection: role,
      error: errorMessage(error),
    });
  });
  redis.on("ready", () => {
    if (!down) return;
    down = false;
    options.log.info("redis connection restored", { connection: role });
  });
}

/** `host:port` (or `[v6]:port`) as ioredis' cluster takes it. */
function parseNode(node: string): { host: string; port: number } {
  const [host, port] = splitNode(node);
  return { host, port };
}

function splitNode(node: string): [string, number] {
  const colon = node.lastIndexOf(":");
  const host = node.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return [host, Number(node.slice(colon + 1))];
}

function withoutClusterFields(options: RedisOptions): NonNullable<ClusterOptions["redisOptions"]> {
  const { retryStrategy: _r, enableOfflineQueue: _q, ...rest } = options;
  return rest;
}

/** Closes a connection and waits until its socket (and ioredis' timers) are gone. */
export async function disconnect(redis: Redis | Cluster): Promise<void> {
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
