import assert from "node:assert/strict";
import {
  clusterNodesUrl,
  ConfigError,
  loadConfig,
  redisUrlProblem,
} from "../../../src/config/mod.ts";

function reader(vars: Record<string, string>) {
  return (name: string) => vars[name];
}

Deno.test("redisUrlProblem() accepts one server's URL and a redis+cluster:// URL", () => {
  for (
    const url of [
      "redis://h:6379",
      "rediss://:pw@h:6380/2",
      "redis+cluster://u:secret@10.0.0.1:7000,10.0.0.2:7000",
      "rediss+cluster://[::1]:7000",
    ]
  ) assert.equal(redisUrlProblem(url), undefined, url);
});

Deno.test("redisUrlProblem() names what is wrong, never the password", () => {
  for (
    const url of [
      "http://h",
      "not a url",
      "redis+cluster://",
      "redis+cluster://:pw@h",
      "redis+cluster://h:70000",
    ]
  ) {
    const problem = redisUrlProblem(url);
    assert.ok(problem, url);
    assert.ok(!problem.includes("pw"), problem);
  }
});

Deno.test("clusterNodesUrl() turns REDIS_CLUSTER_NODES into a redis+cluster:// URL", () => {
  assert.equal(clusterNodesUrl(undefined, undefined), undefined);
  assert.equal(
    clusterNodesUrl(" a.example:7000, b.example:7001 ,[::1]:7002", undefined),
    "redis+cluster://a.example:7000,b.example:7001,[::1]:7002",
  );
});

Deno.test("clusterNodesUrl() throws ConfigError naming REDIS_CLUSTER_NODES for a bad list or with REDIS_URL", () => {
  for (const [nodes, url] of [["h", undefined], [" , ", undefined], ["h:7000", "redis://h"]]) {
    assert.throws(
      () => clusterNodesUrl(nodes, url),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes("REDIS_CLUSTER_NODES"),
    );
  }
});

Deno.test("loadConfig() gives the engine a cluster from REDIS_CLUSTER_NODES or REDIS_URL", () => {
  assert.equal(
    loadConfig(reader({ REDIS_CLUSTER_NODES: "h1:7000,h2:7000" })).redisUrl,
    "redis+cluster://h1:7000,h2:7000",
  );
  assert.equal(
    loadConfig(reader({ REDIS_URL: "redis+cluster://h1:7000" })).redisUrl,
    "redis+cluster://h1:7000",
  );
  assert.throws(
    () => loadConfig(reader({ REDIS_URL: "redis+cluster://h1" })),
    (error: unknown) => error instanceof ConfigError && error.message.includes("REDIS_URL"),
  );
});
