/**
 * The Redis Cluster the integration tests share (TEST_REDIS_CLUSTER_URL, set by
 * `scripts/with_services.ts --redis-cluster`), and a key prefix of a test's own on it, whose
 * keys are deleted from every primary on dispose.
 *
 * @module
 */
import { Cluster } from "ioredis";
import { parseRedisUrl } from "../../src/bus/redis_engine.ts";
import { randomSuffix } from "./services.ts";

/** TEST_REDIS_CLUSTER_URL, or undefined when the suite runs without a cluster. */
export function testRedisClusterUrl(): string | undefined {
  return Deno.env.get("TEST_REDIS_CLUSTER_URL") || undefined;
}

/** Why a cluster test cannot run, for the test that says so. */
export const NO_CLUSTER_MESSAGE = "TEST_REDIS_CLUSTER_URL is not set: run the integration " +
  "tests with `deno task test:integration` (scripts/with_services.ts --redis-cluster starts a " +
  "throwaway cluster), or point TEST_REDIS_CLUSTER_URL at one (redis+cluster://host:port,…)";

/** An admin connection to a cluster (`redis+cluster://` URL). */
export function clusterAdmin(url: string): Cluster {
  const { target, auth } = parseRedisUrl(url);
  if (!("clusterNodes" in target)) throw new TypeError(`Not a cluster URL: ${url}`);
  return new Cluster(
    target.clusterNodes.map((node) => {
      const colon = node.lastIndexOf(":");
      return { host: node.slice(0, colon), port: Number(node.slice(colon + 1)) };
    }),
    { redisOptions: { ...auth, maxRetriesPerRequest: 1 }, slotsRefreshTimeout: 2_000 },
  );
}

/** A key prefix of its own on the cluster; its keys are deleted on dispose. */
export interface TestRedisClusterPrefix extends AsyncDisposable {
  readonly url: string;
  readonly prefix: string;
}

/** Picks a fresh key prefix on the cluster at `url`. */
export function createTestRedisClusterPrefix(url: string): TestRedisClusterPrefix {
  const prefix = `agentsocket_test_${randomSuffix()}`;
  return {
    url,
    prefix,
    async [Symbol.asyncDispose]() {
      const admin = clusterAdmin(url);
      try {
        await admin.ping();
        for (const node of admin.nodes("master")) {
          let cursor = "0";
          do {
            const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
            cursor = next;
            // One DEL per key: a node refuses a multi-key DEL across slots.
            await Promise.all(keys.map((key) => node.del(key)));
          } while (cursor !== "0");
        }
      } finally {
        admin.disconnect();
      }
    },
  };
}
