/**
 * Throwaway PostgreSQL and Redis servers of a test's own, for fault tests that stop, kill
 * and restart a dependency without touching the shared ones. Written once, in
 * `scripts/_services/`, and shared with `scripts/with_services.ts`.
 *
 * @example
 * ```ts
 * import { startThrowawayRedis } from "../../_helpers/throwaway_services.ts";
 *
 * Deno.test("the engine recovers when Redis comes back", async () => {
 *   await using redis = await startThrowawayRedis();
 *   // … point the engine at redis.url, then:
 *   await redis.kill();
 *   await redis.restart(); // same port, empty data
 * });
 * ```
 *
 * @module
 */
export {
  type ClusterNodeProcess,
  findPostgresBinaries,
  findRedisServer,
  type PostgresBinaries,
  startThrowawayPostgres,
  startThrowawayRedis,
  startThrowawayRedisCluster,
  type ThrowawayPostgres,
  type ThrowawayPostgresOptions,
  type ThrowawayRedis,
  type ThrowawayRedisCluster,
  type ThrowawayRedisClusterOptions,
  type ThrowawayRedisOptions,
} from "../../scripts/_services/mod.ts";
