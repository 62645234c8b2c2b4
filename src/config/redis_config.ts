/**
 * Where Redis is, from `REDIS_URL` or `REDIS_CLUSTER_NODES`:
 *
 * - `REDIS_URL=redis://…` or `rediss://…`: one Redis server (or a proxy in front of one).
 * - `REDIS_URL=redis+cluster://[user:password@]host:port,host:port,…` (or `rediss+cluster://`):
 *   a Redis Cluster, given by some of its nodes (the seeds; the rest is discovered).
 * - `REDIS_CLUSTER_NODES=host:port,host:port,…`: the same, without credentials.
 *
 * Setting both is a contradiction. A bad value is a {@link ConfigError} naming the variable;
 * no message holds a password.
 *
 * @module
 */
import { ConfigError, type EnvReader } from "./load_config.ts";

const NODE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * Reads `REDIS_URL` / `REDIS_CLUSTER_NODES`.
 *
 * @returns The URL the Redis engine takes (`redis+cluster://…` for a cluster), or undefined
 *   when neither is set.
 * @throws {ConfigError} for a bad value or both variables set.
 */
export function readRedisUrl(read: EnvReader): string | undefined {
  const url = read("REDIS_URL");
  const nodes = read("REDIS_CLUSTER_NODES");
  if (url !== undefined && nodes !== undefined) {
    throw new ConfigError(
      "REDIS_CLUSTER_NODES",
      "must not be set with REDIS_URL (for a cluster with a password use REDIS_URL=redis+cluster://user:password@host:port,…)",
    );
  }
  if (nodes !== undefined) return `redis+cluster://${nodeList("REDIS_CLUSTER_NODES", nodes)}`;
  if (url === undefined) return undefined;
  const cluster = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]*)(.*)$/i.exec(url);
  if (cluster) {
    nodeList("REDIS_URL", cluster[3]);
    return url;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError("REDIS_URL", "must be a valid URL");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new ConfigError(
      "REDIS_URL",
      `must use redis://, rediss:// or redis+cluster://, received "${parsed.protocol}//"`,
    );
  }
  return url;
}

/** Checks a comma list of `host:port`; returns it without blanks. */
function nodeList(variable: string, raw: string): string {
  const nodes = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  if (nodes.length === 0) {
    throw new ConfigError(variable, "must name at least one cluster node as host:port");
  }
  for (const node of nodes) {
    if (!NODE.test(node) || Number(node.slice(node.lastIndexOf(":") + 1)) > 65_535) {
      throw new ConfigError(variable, `must be a comma list of host:port, received "${node}"`);
    }
  }
  return nodes.join(",");
}
