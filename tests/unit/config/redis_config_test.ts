import assert from "node:assert/strict";
import { ConfigError, loadConfig, readRedisUrl } from "../../../src/config/mod.ts";

function reader(vars: Record<string, string>) {
  return (name: string) => vars[name];
}

Deno.test("readRedisUrl() takes one server's URL as it is", () => {
  assert.equal(readRedisUrl(reader({})), undefined);
  assert.equal(readRedisUrl(reader({ REDIS_URL: "redis://h:6379" })), "redis://h:6379");
  assert.equal(
    readRedisUrl(reader({ REDIS_URL: "rediss://:pw@h:6380/2" })),
    "rediss://:pw@h:6380/2",
  );
});

Deno.test("readRedisUrl() takes a cluster from a redis+cluster:// URL or REDIS_CLUSTER_NODES", () => {
  const url = "redis+cluster://u:secret@10.0.0.1:7000,10.0.0.2:7000";
  assert.equal(readRedisUrl(reader({ REDIS_URL: url })), url);
  assert.equal(
    readRedisUrl(reader({ REDIS_CLUSTER_NODES: " a.example:7000, b.example:7001 ,[::1]:7002" })),
    "redis+cluster://a.example:7000,b.example:7001,[::1]:7002",
  );
});

Deno.test("readRedisUrl() throws ConfigError naming the variable for a bad value", () => {
  const cases: [Record<string, string>, string][] = [
    [{ REDIS_URL: "http://h" }, "REDIS_URL"],
    [{ REDIS_URL: "not a url" }, "REDIS_URL"],
    [{ REDIS_URL: "redis+cluster://" }, "REDIS_URL"],
    [{ REDIS_URL: "redis+cluster://:pw@h" }, "REDIS_URL"],
    [{ REDIS_CLUSTER_NODES: "h" }, "REDIS_CLUSTER_NODES"],
    [{ REDIS_CLUSTER_NODES: "h:70000" }, "REDIS_CLUSTER_NODES"],
    [{ REDIS_CLUSTER_NODES: " , " }, "REDIS_CLUSTER_NODES"],
    [{ REDIS_URL: "redis://h", REDIS_CLUSTER_NODES: "h:7000" }, "REDIS_CLUSTER_NODES"],
  ];
  for (const [vars, variable] of cases) {
    assert.throws(
      () => readRedisUrl(reader(vars)),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes(variable) &&
        !error.message.includes("pw"),
      JSON.stringify(vars),
    );
  }
});

Deno.test("loadConfig() gives the engine REDIS_CLUSTER_NODES as a redis+cluster:// URL", () => {
  const config = loadConfig(reader({ REDIS_CLUSTER_NODES: "h1:7000,h2:7000" }));
  assert.equal(config.redisUrl, "redis+cluster://h1:7000,h2:7000");
});
