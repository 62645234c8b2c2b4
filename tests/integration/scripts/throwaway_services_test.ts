import assert from "node:assert/strict";
import postgres from "postgres";
import {
  findPostgresBinaries,
  findRedisServer,
  startThrowawayPostgres,
  startThrowawayRedis,
} from "../../_helpers/throwaway_services.ts";
import {
  isPortOpen,
  probePostgres,
  probeRedis,
  redisCommands,
} from "../../../scripts/_services/mod.ts";

const linuxOnly = Deno.build.os !== "linux"; // the checks read /proc

/** Processes whose working folder is `dir` or inside it (a server chdirs to its data). */
async function processesIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cwd = await Deno.readLink(`/proc/${entry.name}/cwd`);
      if (cwd === dir || cwd.startsWith(`${dir}/`)) pids.push(Number(entry.name));
    } catch {
      // gone, or a zombie: not running
    }
  }
  return pids;
}

/** The working folder of the live process that serves `port` (its command line names it). */
async function serverFolder(port: number, program: RegExp): Promise<string> {
  const portPattern = new RegExp(`(^|[^0-9])${port}([^0-9]|$)`);
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`)).replaceAll(
        "\0",
        " ",
      );
      if (program.test(cmdline) && portPattern.test(cmdline)) {
        return await Deno.readLink(`/proc/${entry.name}/cwd`);
      }
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`No process serves port ${port}`);
}

async function assertNothingLeft(port: number, dir: string): Promise<void> {
  assert.equal(await isPortOpen(port), false, `port ${port} is still open`);
  assert.deepEqual(await processesIn(dir), [], `processes still run in ${dir}`);
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, `${dir} was not removed`);
}

Deno.test("findPostgresBinaries() and findRedisServer() find this machine's servers", async () => {
  const pg = await findPostgresBinaries();
  assert.ok(pg, "postgres and initdb should be installed here (node-svc machine)");
  assert.ok((await Deno.stat(`${pg.bin}/postgres`)).isFile);
  assert.ok((await Deno.stat(`${pg.bin}/initdb`)).isFile);
  const redis = await findRedisServer();
  assert.ok(redis?.endsWith("redis-server"), `got ${redis}`);
});

Deno.test({
  name: "startThrowawayRedis() answers, comes back empty after kill and restart, leaves nothing",
  ignore: linuxOnly,
  async fn(t) {
    const redis = await startThrowawayRedis();
    const dir = await serverFolder(redis.port, /redis-server/);
    try {
      await t.step("answers PING on 127.0.0.1 and keeps a key", async () => {
        assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
        assert.deepEqual(await probeRedis(redis.url), { ok: true });
        assert.deepEqual(await redisCommands(redis.url, [["SET", "k", "v"], ["GET", "k"]]), [
          "OK",
          "v",
        ]);
      });
      await t.step("kill() closes the port at once", async () => {
        await redis.kill();
        assert.equal(await isPortOpen(redis.port), false);
        assert.equal((await probeRedis(redis.url, { timeoutMs: 500 })).ok, false);
      });
      await t.step("restart() serves the same port with empty data", async () => {
        await redis.restart();
        assert.deepEqual(await redisCommands(redis.url, [["GET", "k"], ["DBSIZE"]]), [null, 0]);
      });
      await t.step("stop() then restart() works too", async () => {
        await redis.stop();
        assert.equal(await isPortOpen(redis.port), false);
        await redis.restart();
        assert.deepEqual(await probeRedis(redis.url), { ok: true });
      });
    } finally {
      await redis[Symbol.asyncDispose]();
    }
    await assertNothingLeft(redis.port, dir);
    await redis[Symbol.asyncDispose](); // a second dispose is a no-op
  },
});

Deno.test({
  name: "startThrowawayPostgres() answers, recovers after kill and start, leaves nothing",
  ignore: linuxOnly,
  async fn(t) {
    const pg = await startThrowawayPostgres();
    const dir = (await serverFolder(pg.port, /postgres/)).replace(/\/data$/, "");
    try {
      await t.step(
        "runs queries on 127.0.0.1 and keeps data across stop() and start()",
        async () => {
          assert.equal(pg.url, `postgres://postgres:postgres@127.0.0.1:${pg.port}/postgres`);
          const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
          try {
            await sql`create table kept (v text)`;
            await sql`insert into kept values ('before stop')`;
          } finally {
            await sql.end();
          }
          await pg.stop();
          assert.equal(await isPortOpen(pg.port), false);
          await pg.start();
          const again = postgres(pg.url, { max: 1, onnotice: () => {} });
          try {
            assert.deepEqual([...await again`select v from kept`], [{ v: "before stop" }]);
          } finally {
            await again.end();
          }
        },
      );
      await t.step("kill() drops an open client; start() recovers on the same port", async () => {
        const sql = postgres(pg.url, { max: 1, onnotice: () => {}, max_lifetime: null });
        try {
          await sql`select 1`;
          await pg.kill();
          assert.equal(await isPortOpen(pg.port), false);
          await assert.rejects(sql`select 1`);
        } finally {
          await sql.end({ timeout: 0 });
        }
        await pg.start();
        await pg.start(); // already running: a no-op
        assert.deepEqual(await probePostgres(pg.url), { ok: true });
      });
    } finally {
      await pg[Symbol.asyncDispose]();
    }
    await assertNothingLeft(pg.port, dir);
  },
});
