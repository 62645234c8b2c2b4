/**
 * The Redis engine alone, under the two shapes of traffic a deployment sees, with the Redis
 * server's CPU per event (read from `/proc`, so the Redis must run on this machine):
 *
 * - `stream`: model-backed runs, each user publishing about one event per flush interval
 *   (`--users` × `--rate` events/s, one event per call: the worst case for a script call);
 * - `firehose`: each user publishing as fast as the engine takes it, in batches of `--batch`
 *   (what a run publisher sends when its agent outpaces Redis).
 *
 * A second engine instance subscribes to every user, so each event also crosses pub/sub once.
 *
 * Usage: `deno run -A tests/bench/redis_shape_bench.ts [--url=redis://127.0.0.1:6379]
 * [--shape=stream|firehose] [--users=1000] [--rate=25] [--seconds=10] [--batch=128]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { Redis } from "ioredis";
import { RedisEngine } from "../../src/bus/redis_engine.ts";
import type { NewEvent } from "../../src/bus/mod.ts";

const { values } = parseArgs({
  options: {
    url: { type: "string", default: Deno.env.get("TEST_REDIS_URL") ?? "redis://127.0.0.1:6379" },
    shape: { type: "string", default: "stream" },
    users: { type: "string", default: "1000" },
    rate: { type: "string", default: "25" },
    seconds: { type: "string", default: "10" },
    batch: { type: "string", default: "128" },
  },
});
const users = Number(values.users);
const seconds = Number(values.seconds);

/** The Redis server's CPU time, ms (user + system), from /proc. */
async function redisCpu(admin: Redis): Promise<() => number> {
  const pid = Number(/process_id:(\d+)/.exec(await admin.info("server"))![1]);
  const ticks = 100; // USER_HZ
  return () => {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 1000 / ticks;
  };
}

function event(user: number, i: number): NewEvent {
  return {
    threadId: `thread-${user}`,
    runId: `run-${user}`,
    name: i === 0 ? "agent_started" : "agent_delta",
    data: { text: `piece ${i} of a model's reply, about as long as one` },
    ts: new Date().toISOString(),
  };
}

const prefix = `shape_${crypto.randomUUID().slice(0, 8)}`;
const options = { url: values.url!, keyPrefix: prefix, retention: { count: 10_000, seconds: 600 } };
const publisher = new RedisEngine({ ...options, instanceId: "publisher" });
const listener = new RedisEngine({ ...options, instanceId: "listener" });
const admin = new Redis(values.url!);
await Promise.all([publisher.whenConnected(), listener.whenConnected()]);
let received = 0;
const subs = await Promise.all(
  Array.from({ length: users }, (_, u) => listener.subscribe(`u${u}`, () => received++)),
);
const cpu = await redisCpu(admin);
const stats = async () => {
  const info = await admin.info("commandstats");
  const calls = (name: string) =>
    Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  return { scripts: calls("evalsha"), published: calls("spublish") };
};
const before = { cpu: cpu(), own: process.cpuUsage(), stats: await stats(), at: performance.now() };
let sent = 0;
const end = performance.now() + seconds * 1000;

if (values.shape === "stream") {
  const rate = Number(values.rate);
  // Each user: one event every 1000/rate ms, with its start spread over the first interval.
  await Promise.all(Array.from({ length: users }, async (_, u) => {
    const every = 1000 / rate;
    let next = performance.now() + Math.random() * every;
    for (let i = 0; performance.now() < end; i++) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      next += every;
      await publisher.publish(`u${u}`, event(u, i));
      sent++;
    }
  }));
} else {
  const batch = Number(values.batch);
  await Promise.all(Array.from({ length: users }, async (_, u) => {
    for (let i = 0; performance.now() < end; i += batch) {
      await publisher.publishMany(
        `u${u}`,
        Array.from({ length: batch }, (_, k) => event(u, i + k)),
      );
      sent += batch;
    }
  }));
}
const after = { cpu: cpu(), own: process.cpuUsage(), stats: await stats(), at: performance.now() };
const deadline = performance.now() + 10_000;
while (received < sent && performance.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const ownUs = (after.own.user + after.own.system) - (before.own.user + before.own.system);
const scripts = after.stats.scripts - before.stats.scripts;
const report = {
  shape: values.shape,
  users,
  eventsPerSecond: Math.round(sent / ((after.at - before.at) / 1000)),
  delivered: `${received}/${sent}`,
  eventsPerScript: +(sent / Math.max(1, scripts)).toFixed(1),
  redisCpuUsPerEvent: +(((after.cpu - before.cpu) * 1000) / sent).toFixed(2),
  engineCpuUsPerEvent: +(ownUs / sent).toFixed(2),
  loadavg: Deno.loadavg(),
};
console.log(JSON.stringify(report));
for (const sub of subs) sub.unsubscribe();
await Promise.all([publisher.close(), listener.close()]);
let cursor = "0";
do {
  const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
  cursor = next;
  if (keys.length > 0) await admin.del(...keys);
} while (cursor !== "0");
admin.disconnect();
