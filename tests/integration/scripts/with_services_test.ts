import assert from "node:assert/strict";
import { freePort, isPortOpen, probePostgres, probeRedis } from "../../../scripts/_services/mod.ts";
import {
  DEFAULT_TEST_DATABASE_URL,
  DEFAULT_TEST_REDIS_URL,
} from "../../../scripts/_services/provide_services.ts";

const SCRIPT = new URL("../../../scripts/with_services.ts", import.meta.url).pathname;
const PROBE_MODULE = new URL("../../../scripts/_services/mod.ts", import.meta.url).href;
const REPO_ROOT = new URL("../../../", import.meta.url).pathname;
const DENO = Deno.execPath(); // absolute: the tests empty PATH
const RUN_TIMEOUT_MS = 90_000;

// As tests/_helpers/services.ts reads them (the defaults README.md#tests names).
const testDatabaseUrl = () => Deno.env.get("TEST_DATABASE_URL") || DEFAULT_TEST_DATABASE_URL;
const testRedisUrl = () => Deno.env.get("TEST_REDIS_URL") || DEFAULT_TEST_REDIS_URL;

/** Env that rules Docker out, so the fallback is the local binaries on any machine. */
const NO_DOCKER = { AGENTSOCKET_DOCKER: "/nonexistent/docker" };

/** A tiny command: prints the URLs it was given as JSON, then exits with `code`. */
function printEnv(code = 0): string[] {
  return [
    DENO,
    "eval",
    `console.log(JSON.stringify({ db: Deno.env.get("TEST_DATABASE_URL"), ` +
    `redis: Deno.env.get("TEST_REDIS_URL") })); Deno.exit(${code});`,
  ];
}

/** URLs nothing listens on. */
function deadUrls(): { TEST_DATABASE_URL: string; TEST_REDIS_URL: string } {
  return {
    TEST_DATABASE_URL: `postgres://postgres:postgres@127.0.0.1:${freePort()}/postgres`,
    TEST_REDIS_URL: `redis://127.0.0.1:${freePort()}`,
  };
}

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run -A scripts/with_services.ts …command` to its end, bounded in time. */
async function withServices(command: string[], env: Record<string, string>): Promise<Outcome> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), RUN_TIMEOUT_MS);
  try {
    const out = await new Deno.Command(DENO, {
      args: ["run", "-A", SCRIPT, ...command],
      cwd: REPO_ROOT,
      env,
      stdin: "null",
      signal: controller.signal,
    }).output();
    const text = new TextDecoder();
    return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

Deno.test("with_services.ts reuses TEST_DATABASE_URL and TEST_REDIS_URL when both answer", async (t) => {
  const urls = { TEST_DATABASE_URL: testDatabaseUrl(), TEST_REDIS_URL: testRedisUrl() };
  assert.deepEqual(await probePostgres(urls.TEST_DATABASE_URL), { ok: true }, "precondition");
  assert.deepEqual(await probeRedis(urls.TEST_REDIS_URL), { ok: true }, "precondition");

  await t.step("passes them to the command unchanged and says so", async () => {
    const run = await withServices(printEnv(), urls);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), {
      db: urls.TEST_DATABASE_URL,
      redis: urls.TEST_REDIS_URL,
    });
    assert.match(run.stderr, /PostgreSQL .* \(reused\), Redis .* \(reused\)/);
    assert.equal(run.stderr.trim().split("\n").length, 1, "one short line about the services");
  });
  await t.step("exits with the command's exit code", async () => {
    assert.equal((await withServices(printEnv(7), urls)).code, 7);
  });
  await t.step("exits 127 for a command that does not exist", async () => {
    const run = await withServices(["agentsocket-no-such-command"], urls);
    assert.equal(run.code, 127);
    assert.match(run.stderr, /command not found: agentsocket-no-such-command/);
  });
});

Deno.test(
  "with_services.ts starts throwaway servers when the URLs are dead, and stops them after a failing command",
  async () => {
    const dead = deadUrls();
    const answers = [
      DENO,
      "eval",
      `import { probePostgres, probeRedis } from ${JSON.stringify(PROBE_MODULE)};
       const db = Deno.env.get("TEST_DATABASE_URL"), redis = Deno.env.get("TEST_REDIS_URL");
       const pg = await probePostgres(db), rd = await probeRedis(redis);
       console.log(JSON.stringify({ db, redis, pg: pg.ok, rd: rd.ok }));
       Deno.exit(5);`,
    ];
    const run = await withServices(answers, { ...dead, ...NO_DOCKER });
    assert.equal(run.code, 5, run.stderr);
    const seen = JSON.parse(run.stdout);
    assert.deepEqual({ pg: seen.pg, rd: seen.rd }, { pg: true, rd: true }, "both answered");
    assert.match(seen.db, /^postgres:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres$/);
    assert.match(seen.redis, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(seen.db, dead.TEST_DATABASE_URL);
    assert.notEqual(seen.redis, dead.TEST_REDIS_URL);
    assert.match(run.stderr, /PostgreSQL .* \(throwaway\), Redis .* \(throwaway\)/);
    // with_services.ts has exited: what it started is gone.
    assert.equal(await isPortOpen(portOf(seen.db)), false, "throwaway PostgreSQL still listens");
    assert.equal(await isPortOpen(portOf(seen.redis)), false, "throwaway Redis still listens");
  },
);

Deno.test(
  "with_services.ts fails naming all three ways when the URLs are dead, no Docker and no binaries",
  async () => {
    const emptyRoot = await Deno.makeTempDir({ prefix: "agentsocket-no-pg-" });
    try {
      const run = await withServices(printEnv(), {
        ...deadUrls(),
        PATH: "", // hides docker, redis-server and any postgres on the PATH
        AGENTSOCKET_POSTGRES_ROOTS: emptyRoot, // hides /usr/lib/postgresql/<version>/bin
        AGENTSOCKET_POSTGRES_BIN: "",
        AGENTSOCKET_REDIS_SERVER: "",
        AGENTSOCKET_DOCKER: "docker", // not on the empty PATH
      });
      assert.equal(run.code, 1, run.stderr);
      assert.equal(run.stdout, "", "the command did not run");
      const message = run.stderr.trim();
      assert.equal(message.split("\n").length, 1, "one message");
      assert.match(message, /cannot provide PostgreSQL and Redis/);
      assert.match(message, /set TEST_DATABASE_URL \/ TEST_REDIS_URL/);
      assert.match(message, /start Docker/);
      assert.match(message, /install postgresql and redis-server/);
    } finally {
      await Deno.remove(emptyRoot, { recursive: true });
    }
  },
);

Deno.test({
  name: "with_services.ts forwards SIGTERM to the command and still stops its throwaway Redis",
  ignore: Deno.build.os === "windows",
  async fn() {
    const command = [
      DENO,
      "eval",
      `Deno.addSignalListener("SIGTERM", () => { console.log("got SIGTERM"); Deno.exit(4); });
       console.log(Deno.env.get("TEST_REDIS_URL"));
       setTimeout(() => Deno.exit(9), 60_000); // never reached: SIGTERM comes first`,
    ];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), RUN_TIMEOUT_MS);
    try {
      const child = new Deno.Command(DENO, {
        args: ["run", "-A", SCRIPT, ...command],
        cwd: REPO_ROOT,
        env: {
          TEST_DATABASE_URL: testDatabaseUrl(),
          TEST_REDIS_URL: deadUrls().TEST_REDIS_URL,
          ...NO_DOCKER,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: controller.signal,
      }).spawn();
      const stderr = new Response(child.stderr).text();
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stdout = "";
      while (!stdout.includes("\n")) { // the command is up once it printed its URL
        const { done, value } = await lines.read();
        if (done) break;
        stdout += value;
      }
      const redisUrl = stdout.trim();
      assert.match(redisUrl, /^redis:\/\/127\.0\.0\.1:\d+$/);
      assert.deepEqual(await probeRedis(redisUrl), { ok: true });
      child.kill("SIGTERM");
      for (let chunk = await lines.read(); !chunk.done; chunk = await lines.read()) {
        stdout += chunk.value;
      }
      const status = await child.status;
      const messages = await stderr;
      assert.equal(status.code, 4, messages);
      assert.match(messages, /Redis 127\.0\.0\.1:\d+ \(throwaway\)/);
      assert.match(stdout, /got SIGTERM/);
      assert.equal(await isPortOpen(portOf(redisUrl)), false, "throwaway Redis still listens");
    } finally {
      clearTimeout(timer);
    }
  },
});
