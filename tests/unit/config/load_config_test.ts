import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../../src/config/mod.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const SECRET = "x".repeat(32);

Deno.test("loadConfig() runs on embedded defaults with no variable set", () => {
  const config = loadConfig(env({}));
  assert.equal(config.port, 8000);
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.appEnv, "development");
  assert.equal(config.jwt.key.kind, "dev_secret");
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.redisUrl, undefined);
  assert.equal(config.limits.handshakeTimeoutMs, 5000);
  assert.equal(config.limits.maxFrameBytes, 65536);
  assert.equal(config.limits.maxPreReadyFrames, 64);
  assert.equal(config.limits.maxConnectionsPerUser, 10);
  assert.equal(config.chatIdTtlSeconds, 86400);
  assert.equal(config.jwt.clockToleranceSeconds, 5);
  assert.deepEqual(config.testing.guardsOff, []);
});

Deno.test("loadConfig() names the variable of a bad value in one line", () => {
  const cases: [Record<string, string>, string][] = [
    [{ PORT: "eighty" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ APP_ENV: "staging" }, "APP_ENV"],
    [{ JWT_SECRET: "short" }, "JWT_SECRET"],
    [{ JWT_SECRET: SECRET, JWT_JWKS_URL: "https://x/jwks" }, "JWT_JWKS_URL"],
    [{ JWT_JWKS_URL: "ftp://x" }, "JWT_JWKS_URL"],
    [{ JWT_PUBLIC_KEY: "not a key" }, "JWT_PUBLIC_KEY"],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
    [{ REDIS_URL: "not a url" }, "REDIS_URL"],
    [{ ALLOWED_ORIGINS: "https://a.example/path" }, "ALLOWED_ORIGINS"],
    [{ HANDSHAKE_TIMEOUT_MS: "-5" }, "HANDSHAKE_TIMEOUT_MS"],
    [{ MAX_CONNECTIONS_PER_USER: "1.5" }, "MAX_CONNECTIONS_PER_USER"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ TEST_UNSAFE_GUARDS_OFF: "everything" }, "TEST_UNSAFE_GUARDS_OFF"],
    [{ REDIS_KEY_PREFIX: "has space" }, "REDIS_KEY_PREFIX"],
    [{ MAX_CONNECTIONS: "0" }, "MAX_CONNECTIONS"],
  ];
  for (const [vars, variable] of cases) {
    assert.throws(
      () => loadConfig(env(vars)),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, JSON.stringify(vars));
        assert.equal(error.variable, variable);
        assert.ok(error.message.includes(variable));
        assert.ok(!error.message.includes("\n"));
        return true;
      },
    );
  }
});

Deno.test("loadConfig() in production requires JWT configuration and both services or none", () => {
  assert.throws(() => loadConfig(env({ APP_ENV: "production" })), /JWT_SECRET/);
  assert.throws(
    () =>
      loadConfig(
        env({ APP_ENV: "production", JWT_SECRET: SECRET, DATABASE_URL: "postgres://h/db" }),
      ),
    /REDIS_URL/,
  );
  assert.throws(
    () => loadConfig(env({ APP_ENV: "production", JWT_SECRET: SECRET, REDIS_URL: "redis://h" })),
    /DATABASE_URL/,
  );
  assert.throws(
    () =>
      loadConfig(env({ APP_ENV: "production", JWT_SECRET: SECRET, TEST_DELAY_VERIFY_MS: "10" })),
    /TEST_DELAY_VERIFY_MS/,
  );
  const config = loadConfig(env({
    APP_ENV: "production",
    JWT_SECRET: SECRET,
    DATABASE_URL: "postgres://h/db",
    REDIS_URL: "redis://h",
  }));
  assert.equal(config.jwt.key.kind, "secret");
});

Deno.test("loadConfig() reads origins, the public key and test knobs", () => {
  const config = loadConfig(env({
    ALLOWED_ORIGINS: "https://a.example, https://b.example/",
    JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----",
    TEST_UNSAFE_GUARDS_OFF: "queue_before_ready,dedupe_by_seq",
  }));
  assert.deepEqual(config.allowedOrigins, ["https://a.example", "https://b.example"]);
  assert.equal(config.jwt.key.kind, "public_key");
  if (config.jwt.key.kind === "public_key") assert.ok(config.jwt.key.key.includes("\n"));
  assert.deepEqual(config.testing.guardsOff, ["queue_before_ready", "dedupe_by_seq"]);
});
