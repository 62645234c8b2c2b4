/**
 * The soak (`deno task test:soak`): three instances of `main.ts` over a Redis Cluster and
 * PostgreSQL, 1,500 connections of 500 users, every client dropping its connection now and then
 * and resuming on a random instance, for 60 s, while model-backed runs (`AGENT=llm`, the local
 * test model server) stream. Afterwards:
 *
 * - every client's stream was gap-free and duplicate-free across all its reconnects
 *   (tests/_helpers/resuming_client.ts checks every frame, docs/protocol.md#resume);
 * - every acknowledged chat has exactly one run, stored with a terminal status, and in the log
 *   exactly one `agent_started` and one terminal event;
 * - every client caught up with its user's log.
 *
 * Sized for a 2-core machine: SOAK_USERS (500), SOAK_CONNECTIONS_PER_USER (3), SOAK_SECONDS
 * (60), SOAK_CHAT_EVERY_MS (a user's chats are this far apart, 8000), SOAK_DROP_EVERY_MS (a
 * client drops its connection every this long on average, 8000).
 *
 * @module
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import postgres from "postgres";
import { RedisEngine } from "../../src/bus/redis_engine.ts";
import type { AckFrame } from "../../src/protocol/mod.ts";
import { startFakeOpenAiServer, stream } from "../_helpers/fake_openai_server.ts";
import { testRedisClusterUrl } from "../_helpers/redis_cluster.ts";
import { ResumingClient } from "../_helpers/resuming_client.ts";
import { createTestDatabase, randomSuffix, TEST_JWT_SECRET } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { startThrowawayRedisCluster } from "../_helpers/throwaway_services.ts";

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);

function setting(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`Bad ${name}: ${raw}`);
  return value;
}

const USERS = setting("SOAK_USERS", 500);
const PER_USER = setting("SOAK_CONNECTIONS_PER_USER", 3);
const SECONDS = setting("SOAK_SECONDS", 60);
const CHAT_EVERY_MS = setting("SOAK_CHAT_EVERY_MS", 8_000);
const DROP_EVERY_MS = setting("SOAK_DROP_EVERY_MS", 8_000);
const SECRET = new TextEncoder().encode(TEST_JWT_SECRET);

/** A user's chats: sent by the user's first client, at most three runs open at once. */
interface Chatter {
  readonly userId: string;
  readonly client: ResumingClient;
  readonly acks: AckFrame[];
  /** Chat ids sent whose answer was lost to a closed connection: sent again, same id. */
  readonly unanswered: string[];
  nextAt: number;
  sent: number;
  busy: boolean;
}

function log(message: string): void {
  console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** Runs `work` over `items`, `concurrency` at a time. */
async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

Deno.test({
  name:
    "soak: 3 instances over a Redis Cluster, 1,500 connections reconnecting to random instances while model runs stream",
  // Many sockets and timers live across the whole test; each is closed before it ends.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const started = performance.now();
    const shared = testRedisClusterUrl();
    await using ownCluster = shared ? undefined : await startThrowawayRedisCluster();
    const clusterUrl = shared ?? ownCluster!.url;
    await using database = await createTestDatabase();
    await using model = startFakeOpenAiServer();
    model.fallback(
      stream().reasoning("Thinking ", "briefly.").text("Here ", "is ", "a ", "short ", "reply."),
    );
    const prefix = `soak_${randomSuffix()}`;
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: clusterUrl,
      REDIS_KEY_PREFIX: prefix,
      JWT_SECRET: TEST_JWT_SECRET,
      AGENT: "llm",
      LLM_BASE_URL: model.baseUrl,
      LLM_MODEL: "test-model",
      LOG_LEVEL: "error",
    };
    const servers: ServerProcess[] = await Promise.all(
      [0, 1, 2].map(() => startServer({ env })),
    );
    try {
      const suffix = randomSuffix().slice(0, 6);
      const users = Array.from({ length: USERS }, (_, i) => `soak-${suffix}-${i}`);
      const tokens = new Map<string, string>();
      for (const user of users) {
        tokens.set(
          user,
          await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(user)
            .setIssuedAt().setExpirationTime("2h").sign(SECRET),
        );
      }
      const randomServer = () => servers[Math.floor(Math.random() * servers.length)].wsUrl;
      const clients = users.map((user) =>
        Array.from(
          { length: PER_USER },
          () =>
            new ResumingClient({
              pickUrl: randomServer,
              token: () => Promise.resolve(tokens.get(user)!),
            }),
        )
      );
      const all = clients.flat();
      await pool(all, 50, (client) => client.connect(Date.now() + 120_000));
      log(
        `${all.length} connections ready after ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s`,
      );

      // ---- the soak: drops and resumes on random instances, chats streaming ------------------
      const end = Date.now() + SECONDS * 1000;
      const chatters: Chatter[] = users.map((userId, i) => ({
        userId,
        client: clients[i][0],
        acks: [],
        unanswered: [],
        nextAt: Date.now() + Math.random() * CHAT_EVERY_MS,
        sent: 0,
        busy: false,
      }));
      const openRuns = (chatter: Chatter) => {
        const ended = new Set(
          chatter.client.events.filter((e) => TERMINAL.has(e.event.name)).map((e) => e.event.runId),
        );
        return chatter.acks.filter((ack) => !ended.has(ack.runId)).length;
      };
      const chat = async (chatter: Chatter) => {
        const id = chatter.unanswered.shift() ?? `${chatter.userId}-chat-${chatter.sent++}`;
        try {
          const answer = await chatter.client.chat(id, `question ${id}`);
          if (answer.type === "ack") chatter.acks.push(answer);
          // An error answer (too_many_runs, rate_limited, unavailable): not stored, not counted.
          else refused.set(answer.code, (refused.get(answer.code) ?? 0) + 1);
        } catch {
          chatter.unanswered.push(id); // the connection closed first: ask again, same id
        }
      };
      let drops = 0;
      let chatsSent = 0;
      const refused = new Map<string, number>();
      const tick = setInterval(() => {
        const now = Date.now();
        if (now < end) {
          for (const client of all) {
            // Each client drops its connection every DROP_EVERY_MS on average.
            if (client.ready && Math.random() < 250 / DROP_EVERY_MS) {
              client.drop();
              drops++;
            }
          }
        }
        for (const chatter of chatters) {
          const due = chatter.unanswered.length > 0 || (now < end && now >= chatter.nextAt);
          if (!due || chatter.busy || !chatter.client.ready || openRuns(chatter) >= 3) continue;
          chatter.busy = true;
          chatter.nextAt = now + CHAT_EVERY_MS * (0.5 + Math.random());
          chatsSent++;
          chat(chatter).finally(() => chatter.busy = false);
        }
      }, 250);
      try {
        while (Date.now() < end) {
          await new Promise((resolve) => setTimeout(resolve, 5_000)); // the soak's length
          log(
            `${drops} drops, ${chatsSent} chats sent, ${
              chatters.reduce((s, c) => s + c.acks.length, 0)
            } acknowledged`,
          );
        }
        // Chats whose answer was lost are asked again until answered.
        const settle = Date.now() + 60_000;
        while (chatters.some((c) => c.unanswered.length > 0 || c.busy)) {
          assert.ok(Date.now() < settle, "every chat answered");
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      } finally {
        clearInterval(tick);
      }
      const acked = chatters.reduce((sum, c) => sum + c.acks.length, 0);
      log(
        `soak over: ${drops} drops, ${acked} chats acknowledged, refused: ${
          JSON.stringify(Object.fromEntries(refused))
        }; waiting for every run to end`,
      );

      // ---- every acknowledged chat: one run, stored as ended ---------------------------------
      const sql = postgres(database.url, { max: 2, onnotice: () => {} });
      try {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const [{ running }] = await sql<{ running: number }[]>`
            select count(*)::int as running from runs where status = 'running'`;
          if (running === 0) break;
          assert.ok(Date.now() < deadline, `${running} runs still running`);
          await new Promise((resolve) => setTimeout(resolve, 250)); // polling the store, bounded
        }
        const rows = await sql<{ id: string; user_id: string; chat_id: string; status: string }[]>`
          select id, user_id, chat_id, status from runs`;
        const byChat = new Map(rows.map((row) => [`${row.user_id}/${row.chat_id}`, row]));
        assert.equal(rows.length, byChat.size, "one run per chat");
        for (const chatter of chatters) {
          const acks = new Map(chatter.acks.map((ack) => [ack.id, ack]));
          assert.equal(acks.size, chatter.acks.length, `${chatter.userId}: one ack per chat id`);
          for (const ack of chatter.acks) {
            const row = byChat.get(`${chatter.userId}/${ack.id}`);
            assert.equal(row?.id, ack.runId, `${ack.id} has its run`);
            assert.notEqual(row!.status, "running");
          }
        }
      } finally {
        await sql.end();
      }

      // ---- the log: one start and one end per run; every client caught up ------------------
      const engine = new RedisEngine({
        url: clusterUrl,
        keyPrefix: prefix,
        instanceId: "soak-check",
        retention: { count: 10_000, seconds: 3_600 },
      });
      try {
        await engine.whenConnected({ signal: AbortSignal.timeout(10_000) });
        const heads = new Map<string, { epoch: string; seq: number }>();
        await pool(chatters, 20, async (chatter) => {
          const range = await engine.readAfter(chatter.userId, 0);
          assert.ok(range.complete, `${chatter.userId}'s log is whole`);
          heads.set(chatter.userId, { epoch: range.epoch, seq: range.seq });
          for (const ack of chatter.acks) {
            const events = range.events.filter((e) => e.runId === ack.runId);
            assert.equal(events.filter((e) => e.name === "agent_started").length, 1, ack.runId);
            assert.equal(events.filter((e) => TERMINAL.has(e.name)).length, 1, ack.runId);
          }
        });
        const caughtUp = Date.now() + 60_000;
        await pool(users.map((_, i) => i), 20, async (i) => {
          const user = users[i];
          const head = heads.get(user)!;
          for (const client of clients[i]) {
            await client.until(
              () => client.position.epoch === head.epoch && client.position.seq >= head.seq,
              `${user}'s client to reach seq ${head.seq}`,
              caughtUp,
            );
          }
        });
      } finally {
        await engine.close();
      }
      await pool(all, 100, (client) => client.stop());
      const violations = all.flatMap((client, i) =>
        client.violations.map((v) => `${users[Math.floor(i / PER_USER)]}: ${v}`)
      );
      assert.deepEqual(violations.slice(0, 20), [], `${violations.length} violations`);
      const reconnects = all.reduce((sum, client) => sum + client.segments.length - 1, 0);
      const resumed = all.reduce(
        (sum, client) => sum + client.segments.filter((s) => s.ready.resumed).length,
        0,
      );
      log(
        `passed: ${acked} chats, ${reconnects} reconnects (${resumed} resumed), in ${
          ((performance.now() - started) / 1000).toFixed(0)
        } s`,
      );
      assert.ok(acked > USERS, `chats went through: ${acked}`);
      assert.ok(resumed > all.length, `clients resumed: ${resumed}`);
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
  },
});
