/**
 * A throwaway Redis Cluster on 127.0.0.1: three primaries with one replica each (by default),
 * `redis-server` processes on free ports (each also needs its port + 10000 free, for the cluster
 * bus) in a temp folder of their own, joined with `redis-cli --cluster create`. No persistence.
 * Stopped for sure and removed on dispose. A test can kill a primary and wait for its replica
 * to take over.
 *
 * @module
 */
import { findOnPath, findRedisServer } from "./binaries.ts";
import { pollUntil } from "./poll.ts";
import { redisCommands } from "./probe.ts";
import type { RedisReply } from "./probe.ts";
import { runCommand, spawnServer, stopChild } from "./process.ts";

/** One node of a {@link ThrowawayRedisCluster}. */
export interface ClusterNodeProcess {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** True while its process runs. */
  readonly running: boolean;
  /** Kills it with SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again (same port, its cluster config kept; its data is empty). */
  start(): Promise<void>;
}

/** A Redis Cluster of one's own; `await using` stops it and removes its folder. */
export interface ThrowawayRedisCluster extends AsyncDisposable {
  /** `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,…`: every node, as seeds. */
  readonly url: string;
  readonly nodes: readonly ClusterNodeProcess[];
  /** The node that serves `slot` as primary now, by asking a running node. */
  primaryOf(slot: number): Promise<ClusterNodeProcess>;
  /**
   * Resolves once every slot is served by a running primary and every running node agrees the
   * cluster is `ok` (after a start, or after a failover).
   */
  waitHealthy(options?: { readonly timeoutMs?: number }): Promise<void>;
  /** Stops every node for sure and removes the folder; idempotent. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@link startThrowawayRedisCluster}. */
export interface ThrowawayRedisClusterOptions {
  /** @default 3 */
  readonly primaries?: number;
  /** Replicas per primary. @default 1 */
  readonly replicas?: number;
  /**
   * `cluster-node-timeout`: how long a primary may be unreachable before its replica takes
   * over. @default 1000
   */
  readonly nodeTimeoutMs?: number;
  /** Aborts a start in progress. */
  readonly signal?: AbortSignal;
}

const STOP_GRACE_MS = 5_000;
const START_TIMEOUT_MS = 30_000;

/**
 * Starts a cluster and waits until it serves every slot with every replica in sync.
 *
 * @throws {Error} when `redis-server` or `redis-cli` is missing, or the cluster does not form.
 */
export async function startThrowawayRedisCluster(
  options: ThrowawayRedisClusterOptions = {},
): Promise<ThrowawayRedisCluster> {
  const server = await findRedisServer();
  const cli = Deno.env.get("AGENTSOCKET_REDIS_CLI") ?? await findOnPath("redis-cli");
  if (!server || !cli) {
    throw new Error(
      "A Redis Cluster needs redis-server and redis-cli (apt-get install redis-server), " +
        "or TEST_REDIS_CLUSTER_URL naming a running cluster",
    );
  }
  const primaries = options.primaries ?? 3;
  const replicas = options.replicas ?? 1;
  const dir = await Deno.makeTempDir({ prefix: "agentsocket-redis-cluster-" });
  const cluster = new Cluster(dir, server, options.nodeTimeoutMs ?? 1_000, options.signal);
  try {
    await cluster.startNodes(primaries * (1 + replicas));
    const create = await runCommand(cli, [
      "--cluster",
      "create",
      ...cluster.nodes.map((node) => `127.0.0.1:${node.port}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ], { timeoutMs: START_TIMEOUT_MS });
    if (create.code !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    }
    await cluster.waitHealthy({ timeoutMs: START_TIMEOUT_MS, replicasInSync: true });
    return cluster;
  } catch (error) {
    await cluster[Symbol.asyncDispose]();
    throw error;
  }
}

class NodeProcess implements ClusterNodeProcess {
  readonly port: number;
  readonly url: string;
  #program: string;
  #dir: string;
  #nodeTimeoutMs: number;
  #signal?: AbortSignal;
  #child?: Deno.ChildProcess;

  constructor(
    program: string,
    dir: string,
    port: number,
    options: { nodeTimeoutMs: number; signal?: AbortSignal },
  ) {
    this.#program = program;
    this.#dir = dir;
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.#nodeTimeoutMs = options.nodeTimeoutMs;
    this.#signal = options.signal;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  async start(): Promise<void> {
    if (this.#child) return;
    await Deno.mkdir(this.#dir, { recursive: true });
    const logFile = `${this.#dir}/redis.log`;
    const child = await spawnServer(this.#program, [
      "--port",
      String(this.port),
      "--bind",
      "127.0.0.1",
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      "nodes.conf",
      "--cluster-node-timeout",
      String(this.#nodeTimeoutMs),
      // A replica takes over however long it was cut off: a throwaway cluster never waits.
      "--cluster-replica-validity-factor",
      "0",
      "--save",
      "",
      "--appendonly",
      "no",
      "--repl-diskless-sync",
      "yes",
      "--repl-diskless-sync-delay",
      "0",
      "--dir",
      this.#dir,
      "--daemonize",
      "no",
      "--logfile",
      logFile,
      "--loglevel",
      "warning",
    ], { cwd: this.#dir });
    this.#child = child;
    let exited = false;
    child.status.then(() => exited = true);
    try {
      await pollUntil(`redis-server on 127.0.0.1:${this.port}`, async () => {
        if (exited) throw new Error("it exited");
        const [pong] = await redisCommands(this.url, [["PING"]], { timeoutMs: 1_000 }).catch(
          () => [null],
        );
        return pong === "PONG" ? true : undefined;
      }, { timeoutMs: START_TIMEOUT_MS, signal: this.#signal });
    } catch (error) {
      await this.kill();
      const log = await Deno.readTextFile(logFile).catch(() => "");
      throw new Error(
        `redis-server on 127.0.0.1:${this.port} did not start: ${
          error instanceof Error ? error.message : String(error)
        }\n${log.trim().split("\n").slice(-10).join("\n")}`,
        { cause: error },
      );
    }
  }

  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child) await stopChild(child, "SIGKILL", STOP_GRACE_MS);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (child) await stopChild(child, "SIGTERM", STOP_GRACE_MS);
  }
}

class Cluster implements ThrowawayRedisCluster {
  readonly nodes: NodeProcess[] = [];
  #dir: string;
  #program: string;
  #nodeTimeoutMs: number;
  #signal?: AbortSignal;
  #disposed = false;

  constructor(dir: string, program: string, nodeTimeoutMs: number, signal?: AbortSignal) {
    this.#dir = dir;
    this.#program = program;
    this.#nodeTimeoutMs = nodeTimeoutMs;
    this.#signal = signal;
  }

  get url(): string {
    return `redis+cluster://${this.nodes.map((node) => `127.0.0.1:${node.port}`).join(",")}`;
  }

  async startNodes(count: number): Promise<void> {
    const ports = clusterPorts(count);
    for (const [i, port] of ports.entries()) {
      this.nodes.push(
        new NodeProcess(this.#program, `${this.#dir}/node-${i}`, port, {
          nodeTimeoutMs: this.#nodeTimeoutMs,
          signal: this.#signal,
        }),
      );
    }
    await Promise.all(this.nodes.map((node) => node.start()));
  }

  async primaryOf(slot: number): Promise<ClusterNodeProcess> {
    for (const node of this.nodes.filter((n) => n.running)) {
      const ranges = await clusterSlots(node.url).catch(() => undefined);
      if (!ranges) continue;
      for (const [from, to, port] of ranges) {
        if (slot >= from && slot <= to) {
          const owner = this.nodes.find((n) => n.port === port);
          if (owner) return owner;
        }
      }
    }
    throw new Error(`No running node knows who serves slot ${slot}`);
  }

  async waitHealthy(
    options: { readonly timeoutMs?: number; readonly replicasInSync?: boolean } = {},
  ): Promise<void> {
    await pollUntil("the Redis Cluster to serve every slot", async () => {
      const running = this.nodes.filter((n) => n.running);
      const runningPorts = new Set(running.map((n) => n.port));
      for (const node of running) {
        const [info] = await redisCommands(node.url, [["CLUSTER", "INFO"]], { timeoutMs: 1_000 })
          .catch(() => [null]);
        if (typeof info !== "string" || !info.includes("cluster_state:ok")) return undefined;
        const ranges = await clusterSlots(node.url).catch(() => undefined);
        if (!ranges) return undefined;
        const covered = ranges.reduce((sum, [from, to]) => sum + to - from + 1, 0);
        if (covered !== 16_384 || ranges.some(([, , port]) => !runningPorts.has(port))) {
          return undefined;
        }
        if (options.replicasInSync) {
          const [replication] = await redisCommands(node.url, [["INFO", "replication"]], {
            timeoutMs: 1_000,
          }).catch(() => [null]);
          if (typeof replication !== "string") return undefined;
          if (replication.includes("role:slave") && !replication.includes("link_status:up")) {
            return undefined;
          }
        }
      }
      return true;
    }, { timeoutMs: options.timeoutMs ?? START_TIMEOUT_MS, signal: this.#signal });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await Promise.all(this.nodes.map((node) => node.stop()));
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** `[first slot, last slot, primary port]` of every range, from CLUSTER SLOTS. */
async function clusterSlots(url: string): Promise<[number, number, number][]> {
  const [reply] = await redisCommands(url, [["CLUSTER", "SLOTS"]], { timeoutMs: 1_000 });
  return (reply as RedisReply[][]).map((range) => {
    const primary = range[2] as RedisReply[];
    return [Number(range[0]), Number(range[1]), Number(primary[1])];
  });
}

/** `count` distinct free ports whose cluster bus port (+10000) is free too. */
function clusterPorts(count: number): number[] {
  const ports: number[] = [];
  const held: Deno.Listener[] = [];
  try {
    for (let attempts = 0; ports.length < count && attempts < 1_000; attempts++) {
      const port = 20_000 + Math.floor(Math.random() * 30_000);
      try {
        const a = Deno.listen({ hostname: "127.0.0.1", port });
        try {
          held.push(Deno.listen({ hostname: "127.0.0.1", port: port + 10_000 }));
          held.push(a);
          ports.push(port);
        } catch {
          a.close();
        }
      } catch {
        // taken
      }
    }
  } finally {
    for (const listener of held) listener.close();
  }
  if (ports.length < count) throw new Error("Could not find free ports for a Redis Cluster");
  return ports;
}
