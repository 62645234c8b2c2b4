/**
 * What the server answers before and around an upgrade (docs/protocol.md#handshake, README.md#configuration): subprotocol selection in
 * both comma spellings, 400/401/403 before any upgrade, dev tokens only in development and only
 * to loopback, health, metrics, and a bad configuration stopping start-up with one line.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config/mod.ts";
import { buildServer } from "../../src/server/mod.ts";
import { startServer } from "../_helpers/start_server.ts";
import { rawUpgrade } from "../_helpers/raw_upgrade.ts";
import { TestClient } from "../_helpers/test_client.ts";

const SECRET = "e2e-secret-that-is-at-least-32-bytes-long";

Deno.test("the upgrade selects agentsocket.v1 in both comma spellings and refuses bad offers", async (t) => {
  await using server = await startServer();
  const token = await server.devToken("alice");
  for (const offer of [`agentsocket.v1, bearer.${token}`, `agentsocket.v1,bearer.${token}`]) {
    await t.step(`offer "${offer.slice(0, 24)}…" gets 101 and agentsocket.v1`, async () => {
      const response = await rawUpgrade(server.port, { "Sec-WebSocket-Protocol": offer });
      assert.equal(response.status, 101);
      assert.equal(response.headers.get("sec-websocket-protocol"), "agentsocket.v1");
    });
  }
  await t.step("an offer without agentsocket.v1 gets 400", async () => {
    for (const offer of ["graphql-ws", "agentsocket.v10", `bearer.${token}`]) {
      assert.equal(
        (await rawUpgrade(server.port, { "Sec-WebSocket-Protocol": offer })).status,
        400,
      );
    }
  });
  await t.step("an invalid Authorization header gets 401 before any upgrade", async () => {
    for (const value of ["Bearer garbage", "Basic abc", `Bearer ${token}x`]) {
      assert.equal((await rawUpgrade(server.port, { Authorization: value })).status, 401);
    }
  });
  await t.step("a valid Authorization header needs no token in hello", async () => {
    const client = TestClient.open(server.wsUrl, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await client.hello()).userId, "alice");
    await client.close();
  });
  await t.step(
    "a bearer subprotocol token is used; the server never selects a bearer entry",
    async () => {
      const client = TestClient.open(server.wsUrl, {
        protocols: ["agentsocket.v1", `bearer.${token}`],
      });
      assert.equal((await client.hello()).userId, "alice");
      assert.equal(client.socket.protocol, "agentsocket.v1");
      await client.close();
    },
  );
  await t.step("a bad subprotocol token closes 4401 after the upgrade", async () => {
    const client = TestClient.open(server.wsUrl, { protocols: ["agentsocket.v1", "bearer.nope"] });
    await client.opened;
    client.send({ type: "hello" });
    assert.equal((await client.waitClosed()).code, 4401);
  });
  await t.step("a token in the query string is never read", async () => {
    const client = TestClient.open(`${server.wsUrl}?token=${token}`);
    await client.opened;
    client.send({ type: "hello" });
    assert.equal((await client.waitClosed()).code, 4401);
  });
  await server.assertNoRaces();
});

Deno.test("production: origins are checked with 403, dev tokens are 404", async () => {
  await using server = await startServer({
    env: { APP_ENV: "production", JWT_SECRET: SECRET, ALLOWED_ORIGINS: "https://app.example" },
  });
  assert.equal((await rawUpgrade(server.port, { Origin: "https://evil.example" })).status, 403);
  assert.equal((await rawUpgrade(server.port, { Origin: "https://app.example" })).status, 101);
  assert.equal((await rawUpgrade(server.port, {})).status, 101, "no Origin: not a browser");
  const devToken = await fetch(`${server.url}/auth/dev-token`, {
    method: "POST",
    body: JSON.stringify({ userId: "x" }),
  });
  assert.equal(devToken.status, 404);
  await devToken.body?.cancel();
});

Deno.test("POST /auth/dev-token answers 404 to a remote address that is not loopback, in the built server", async () => {
  // The handler main.ts gives Deno.serve, built from a development configuration, given the
  // connection info Deno would pass for each remote address: the rule runs on every machine,
  // whatever its interfaces.
  const env: Record<string, string> = { LOG_LEVEL: "silent", PORT: "0" };
  const server = await buildServer(loadConfig((name) => env[name]));
  try {
    const ask = (hostname: string, body = JSON.stringify({ userId: "x" })) =>
      server.fetch(
        new Request("http://agentsocket.test/auth/dev-token", { method: "POST", body }),
        { remoteAddr: { hostname, port: 40_000, transport: "tcp" } },
      );
    for (const hostname of ["192.0.2.7", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::7"]) {
      const response = await ask(hostname);
      assert.equal(response.status, 404, hostname);
      await response.body?.cancel();
    }
    for (const hostname of ["127.0.0.1", "::1"]) {
      const response = await ask(hostname);
      assert.equal(response.status, 200, hostname);
      assert.ok((await response.json()).token, hostname);
    }
    const bad = await ask("127.0.0.1", "{");
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  } finally {
    await server.close();
  }
});

const nonLoopback = Deno.networkInterfaces().find((i) =>
  i.family === "IPv4" && !i.address.startsWith("127.")
);

Deno.test({
  name: "POST /auth/dev-token answers 404 to a client connecting from a non-loopback address",
  // Needs an address other than loopback to connect from; reported as ignored, not passed.
  ignore: nonLoopback === undefined,
  async fn() {
    await using server = await startServer({ env: { HOST: "0.0.0.0" } });
    const response = await fetch(`http://${nonLoopback!.address}:${server.port}/auth/dev-token`, {
      method: "POST",
      body: JSON.stringify({ userId: "x" }),
    });
    assert.equal(response.status, 404);
    await response.body?.cancel();
    const loopback = await fetch(`${server.url}/auth/dev-token`, {
      method: "POST",
      body: JSON.stringify({ userId: "x" }),
    });
    assert.equal(loopback.status, 200, "the same server answers loopback");
    await loopback.body?.cancel();
  },
});

Deno.test("health and metrics answer", async () => {
  await using server = await startServer();
  const live = await fetch(`${server.url}/health/live`);
  assert.equal(live.status, 200);
  await live.body?.cancel();
  const ready = await fetch(`${server.url}/health/ready`);
  assert.deepEqual(await ready.json(), { status: "ready", checks: {} });
  const metrics = await server.metrics();
  for (
    const name of [
      "agentsocket_connections_open",
      "agentsocket_handshake_seconds_bucket",
      "agentsocket_connection_close_total",
      'agentsocket_race_violations_total{kind="send_not_open"}',
      'agentsocket_runs_total{status="started"}',
    ]
  ) {
    assert.ok(metrics.includes(name), name);
  }
});

Deno.test("a bad configuration value stops start-up with one line naming the variable", async (t) => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: "abc" }, "PORT"],
    [{ APP_ENV: "production" }, "JWT_SECRET"],
    [{ JWT_SECRET: "short" }, "JWT_SECRET"],
    [
      { JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" },
      "JWT_PUBLIC_KEY",
    ],
  ];
  for (const [env, variable] of cases) {
    await t.step(variable, async () => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname],
        env: { ...env, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(output.code, 1);
      const stderr = new TextDecoder().decode(output.stderr).trim();
      assert.equal(stderr.split("\n").length, 1, stderr);
      assert.ok(stderr.includes(variable), stderr);
      assert.ok(!stderr.includes("    at "), "no stack trace");
    });
  }
});

Deno.test("at MAX_CONNECTIONS a new connection is accepted, then closed 1013, and no process dies", async () => {
  await using server = await startServer({ env: { MAX_CONNECTIONS: "3" } });
  const token = await server.devToken("crowded");
  const held = [0, 1, 2].map(() => TestClient.open(server.wsUrl));
  await Promise.all(held.map((c) => c.hello(token)));
  const extra = TestClient.open(server.wsUrl);
  await extra.opened;
  const closed = await extra.waitClosed();
  assert.deepEqual([closed.code, closed.reason], [1013, "Server at capacity"]);
  await held[0].close();
  const later = TestClient.open(server.wsUrl);
  assert.equal((await later.hello(token)).userId, "crowded");
  await Promise.all([...held, later].map((c) => c.close()));
  await server.assertNoRaces();
});
