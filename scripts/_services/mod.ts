/**
 * Local PostgreSQL and Redis for the integration and e2e suites (SPEC §8): probes, throwaway
 * servers, and the Docker Compose fallback. Used by `scripts/with_services.ts` and, through
 * `tests/_helpers/throwaway_services.ts`, by the fault tests.
 *
 * @module
 */
export {
  DEFAULT_POSTGRES_ROOTS,
  findPostgresBinaries,
  findRedisServer,
  type PostgresBinaries,
} from "./binaries.ts";
export { freePort, isPortOpen } from "./free_port.ts";
export { DeadlineError, type PollOptions, pollUntil, withDeadline } from "./poll.ts";
export {
  describeEndpoint,
  type ProbeOptions,
  probePostgres,
  probeRedis,
  type ProbeResult,
  redisCommands,
  type RedisReply,
  RedisReplyError,
} from "./probe.ts";
export {
  startThrowawayPostgres,
  type ThrowawayPostgres,
  type ThrowawayPostgresOptions,
} from "./throwaway_postgres.ts";
export {
  startThrowawayRedis,
  type ThrowawayRedis,
  type ThrowawayRedisOptions,
} from "./throwaway_redis.ts";
export {
  type ClusterNodeProcess,
  startThrowawayRedisCluster,
  type ThrowawayRedisCluster,
  type ThrowawayRedisClusterOptions,
} from "./throwaway_redis_cluster.ts";
export {
  DEFAULT_TEST_DATABASE_URL,
  DEFAULT_TEST_REDIS_URL,
  type ProvidedServices,
  provideServices,
  type ProvideServicesOptions,
  type ServiceSource,
  ServicesUnavailableError,
} from "./provide_services.ts";
