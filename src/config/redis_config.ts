/**
 * Where Redis is: the `redisUrl` setting (`REDIS_URL`), or `REDIS_CLUSTER_NODES`.
 *
 * - `redis://…` or `rediss://…`: one Redis server (or a proxy in front of one).
 * - `redis+cluster://[user:password@]host:port,host:port,…` (or `rediss+cluster://`): a Redis
 *   Cluster, given by some of its nodes (the seeds; the rest is discovered).
 * - `REDIS_CLUSTER_NODES=host:port,host:port,…`: the same cluster, without credentials; it
 *   becomes `redisUrl` and must not be set with `REDIS_URL`.
 *
 * No message holds a password.
 *
 * @module
 */
import { ENGINES } from "../bus/mod.ts";
import { ConfigError } from "./env_reader.ts";

const NODE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;
const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:[^@/]*@)?([^/?#]*)/i;

/**
 * What is wrong with a `redisUrl` value, or undefined when it names one server or a cluster.
 */
export function redisUrlProblem(value: string): string | undefined {
  const cluster = CLUSTER_URL.exec(value);
  if (cluster) return nodeListProblem(cluster[2]);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "must be a valid URL";
  }
  if (!Object.hasOwn(ENGINES, url.protocol)) {
    // Each engine is named by its URL scheme (src/bus/mod.ts).
    return `must use ${
      Object.keys(ENGINES).map((scheme) => `${scheme}//`).join(", ")
    }, received "${url.protocol}//"`;
  }
  return undefined;
}

/**
 * `REDIS_CLUSTER_NODES` as the `redisUrl` it stands for.
 *
 * @param nodes The variable's value, when set.
 * @param redisUrl `REDIS_URL`, when set.
 * @returns `redis+cluster://<nodes>`, or undefined when `nodes` is.
 * @throws {ConfigError} naming `REDIS_CLUSTER_NODES` for a bad list, or when both are set.
 */
export function clusterNodesUrl(
  nodes: string | undefined,
  redisUrl: string | undefined,
): string | undefined {
  if (nodes === undefined) return undefined;
  if (redisUrl !== undefined) {
    throw new ConfigError(
      "REDIS_CLUSTER_NODES",
      "must not be set with REDIS_URL (for a cluster with a password use REDIS_URL=redis+cluster://user:password@host:port,…)",
    );
  }
  const problem = nodeListProblem(nodes);
  if (problem) throw new ConfigError("REDIS_CLUSTER_NODES", problem);
  return `redis+cluster://${splitNodes(nodes).join(",")}`;
}

function splitNodes(raw: string): string[] {
  return raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function nodeListProblem(raw: string): string | undefined {
  const nodes = splitNodes(raw);
  if (nodes.length === 0) return "must name at least one cluster node as host:port";
  for (const node of nodes) {
    if (!NODE.test(node) || Number(node.slice(node.lastIndexOf(":") + 1)) > 65_535) {
      return `must be a comma list of host:port, received "${node}"`;
    }
  }
  return undefined;
}
