import assert from "node:assert/strict";
import { DevTokenIssuer, JwtVerifier } from "../../../src/auth/mod.ts";
import { MemoryEngine } from "../../../src/bus/memory_engine.ts";
import { ConnectionReadinessChecker } from "../../../src/connection/mod.ts";
import type { ConnectionActorDeps } from "../../../src/connection/mod.ts";
import { createApp } from "../../../src/http/create_app.ts";
import { ServerMetrics } from "../../../src/metrics/mod.ts";
import { MemoryStore } from "../../../src/store/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

const secret = new TextEncoder().encode("http-unit-test-secret-32-bytes-long!");

async function setup() {
  const clock = new ManualClock(Date.now());
  const store = new MemoryStore({ clock });
  const engine = new MemoryEngine({ clock, retention: { count: 100, seconds: 3600 } });
  const verifier = new JwtVerifier({ key: { kind: "secret", secret } });
  const readiness = new ConnectionReadinessChecker({ clock, probes: {} });
  await readiness.start();
  const metrics = new ServerMetrics({
    openConnections: () => 0,
    raceViolations: () => [],
    dependencies: () => [],
    activeRuns: () => 0,
  });
  const devTokens = new DevTokenIssuer({ secret });
  /** Every `[userId, threadId]` the routes asked the threads port to delete. */
  const deletions: [string, string][] = [];
  const app = createApp({
    store,
    threads: {
      delete(userId, threadId) {
        deletions.push([userId, threadId]);
        return store.deleteThread(userId, threadId);
      },
    },
    engine,
    verifier,
    devTokens,
    readiness,
    metrics,
    log: silentLogger,
    pageHtml: "<p>page</p>",
    upgrade: {
      actorDeps: {} as ConnectionActorDeps,
      verifier,
      gate: { dependenciesReady: () => true, draining: () => false },
      origins: { production: false },
      heartbeatSeconds: 0,
      log: silentLogger,
      onActor: () => {},
    },
  });
  const loopback = { remoteAddr: { hostname: "127.0.0.1" } };
  const get = async (path: string, token?: string) => {
    const response = await app.fetch(
      new Request(`http://localhost${path}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      }),
      loopback,
    );
    return { status: response.status, body: await response.json() };
  };
  /** Sends `method path` with a token and a raw body; the answer's status and JSON (or null). */
  const send = async (
    method: string,
    path: string,
    options: { token?: string; body?: string } = {},
  ) => {
    const response = await app.fetch(
      new Request(`http://localhost${path}`, {
        method,
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
        body: options.body,
      }),
      loopback,
    );
    const text = await response.text();
    return { status: response.status, body: text === "" ? null : JSON.parse(text) };
  };
  return { store, engine, readiness, app, get, send, deletions, devTokens, loopback };
}

/** Starts a chat of `userId` that the test then finishes or leaves running. */
async function startRun(store: MemoryStore, userId: string, chatId: string, text = "hi") {
  const result = await store.beginChat({
    userId,
    chatId,
    text,
    ownerInstance: "i",
    leaseMs: 10_000,
  });
  assert.equal(result.kind, "started");
  return (result as Extract<typeof result, { kind: "started" }>).run;
}

Deno.test("GET /api/threads/:id/messages fills a seq the store has not recorded yet from the log", async () => {
  const { store, engine, get, devTokens, readiness } = await setup();
  const token = await devTokens.issue("alice");
  const started = await store.beginChat({
    userId: "alice",
    chatId: "c1",
    text: "hi",
    ownerInstance: "i",
    leaseMs: 10_000,
  });
  assert.equal(started.kind, "started");
  if (started.kind !== "started") return;
  const { run } = started;
  await engine.publish("alice", {
    threadId: run.threadId,
    runId: run.id,
    name: "agent_thinking",
    data: {},
    ts: "",
  });
  await engine.publish("alice", {
    threadId: run.threadId,
    runId: run.id,
    name: "agent_started",
    data: {},
    ts: "",
  });
  // The event went out with seq 2; the store has not recorded it yet.
  const before = await get(`/api/threads/${run.threadId}/messages`, token);
  assert.deepEqual(before.body.messages.map((m: { seq: number }) => m.seq), [2]);
  await store.recordRunStart("alice", run.id, 2);
  await store.finishRun("alice", run.id, { status: "completed", reply: "hello" });
  await engine.publish("alice", {
    threadId: run.threadId,
    runId: run.id,
    name: "agent_completed",
    data: {},
    ts: "",
  });
  const after = await get(`/api/threads/${run.threadId}/messages`, token);
  assert.deepEqual(after.body.messages.map((m: { role: string; seq: number }) => [m.role, m.seq]), [
    ["user", 2],
    ["assistant", 3],
  ]);
  readiness.stop();
  await store.close();
  await engine.close();
});

Deno.test("GET /api/threads pages newest first with nextCursor, and validates its query", async () => {
  const { store, engine, get, devTokens, readiness } = await setup();
  const token = await devTokens.issue("bob");
  for (let i = 0; i < 5; i++) {
    await store.beginChat({
      userId: "bob",
      chatId: `c${i}`,
      text: `t${i}`,
      ownerInstance: "i",
      leaseMs: 1,
    });
  }
  const first = await get("/api/threads?limit=2", token);
  assert.deepEqual(first.body.threads.map((t: { title: string }) => t.title), ["t4", "t3"]);
  const second = await get(`/api/threads?limit=2&before=${first.body.nextCursor}`, token);
  assert.deepEqual(second.body.threads.map((t: { title: string }) => t.title), ["t2", "t1"]);
  const last = await get(`/api/threads?limit=2&before=${second.body.nextCursor}`, token);
  assert.deepEqual(last.body.threads.map((t: { title: string }) => t.title), ["t0"]);
  assert.equal(last.body.nextCursor, undefined);
  assert.equal((await get("/api/threads?limit=abc", token)).status, 400);
  assert.equal((await get("/api/threads?before=garbage", token)).status, 400);
  assert.equal((await get("/api/threads")).status, 401);
  assert.equal((await get("/api/threads/none/messages", token)).status, 404);
  readiness.stop();
  await store.close();
  await engine.close();
});

Deno.test("POST /auth/dev-token answers loopback clients only", async () => {
  const { app, readiness, store, engine } = await setup();
  const ask = (hostname: string) =>
    app.fetch(
      new Request("http://localhost/auth/dev-token", {
        method: "POST",
        body: JSON.stringify({ userId: "carol" }),
      }),
      { remoteAddr: { hostname } },
    );
  for (const hostname of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
    const response = await ask(hostname);
    assert.equal(response.status, 200, hostname);
    assert.ok((await response.json()).token);
  }
  for (const hostname of ["10.0.0.5", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1"]) {
    const response = await ask(hostname);
    assert.equal(response.status, 404, hostname);
    await response.body?.cancel();
  }
  readiness.stop();
  await store.close();
  await engine.close();
});

Deno.test("GET /api/threads/:id/messages gives each message its runStatus and a failed run's error", async () => {
  const { store, engine, get, devTokens, readiness } = await setup();
  const token = await devTokens.issue("alice");
  const run = await startRun(store, "alice", "c1");
  const running = await get(`/api/threads/${run.threadId}/messages`, token);
  assert.deepEqual(running.body.messages.map((m: { runStatus: string }) => m.runStatus), [
    "running",
  ]);
  const error = { code: "provider_unavailable", message: "The model is unreachable" };
  await store.finishRun("alice", run.id, { status: "failed", error, reply: "Partial" });
  const failed = await get(`/api/threads/${run.threadId}/messages`, token);
  assert.deepEqual(
    failed.body.messages.map((
      m: Record<string, unknown>,
    ) => [m.role, m.text, m.runStatus, m.error]),
    [["user", "hi", "failed", undefined], ["assistant", "Partial", "failed", error]],
  );
  readiness.stop();
  await store.close();
  await engine.close();
});

Deno.test("PATCH /api/threads/:id renames the caller's thread and answers with it", async () => {
  const { store, engine, send, get, devTokens, readiness } = await setup();
  const alice = await devTokens.issue("alice");
  const bob = await devTokens.issue("bob");
  const run = await startRun(store, "alice", "c1", "first words");
  const path = `/api/threads/${run.threadId}`;

  const renamed = await send("PATCH", path, {
    token: alice,
    body: JSON.stringify({ title: "  Trip plans  " }),
  });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.body.id, run.threadId);
  assert.equal(renamed.body.title, "Trip plans");
  assert.equal(renamed.body.createdAt, run.createdAt);
  assert.equal(typeof renamed.body.updatedAt, "string");
  const listed = await get("/api/threads", alice);
  assert.deepEqual(listed.body.threads, [renamed.body]);

  // Not the caller's, or missing: 404, and nothing changes.
  const title = JSON.stringify({ title: "Mine now" });
  assert.equal((await send("PATCH", path, { token: bob, body: title })).status, 404);
  assert.equal(
    (await send("PATCH", "/api/threads/none", { token: alice, body: title })).status,
    404,
  );
  // A bad body or title: 400.
  for (const body of ["not json", "null", "[]", "{}", '{"title":7}', '{"title":"   "}']) {
    const answer = await send("PATCH", path, { token: alice, body });
    assert.equal(answer.status, 400, body);
    assert.equal(typeof answer.body.error.code, "string");
  }
  const tooLong = JSON.stringify({ title: "x".repeat(201) });
  assert.equal((await send("PATCH", path, { token: alice, body: tooLong })).status, 400);
  const longest = JSON.stringify({ title: "x".repeat(200) });
  assert.equal((await send("PATCH", path, { token: alice, body: longest })).status, 200);
  assert.equal((await send("PATCH", path, { body: title })).status, 401);
  const [thread] = (await store.listThreads("alice", { limit: 1 })).items;
  assert.equal(thread.title, "x".repeat(200));
  readiness.stop();
  await store.close();
  await engine.close();
});

Deno.test("DELETE /api/threads/:id deletes through the threads port: 204, then 404", async () => {
  const { store, engine, send, get, deletions, devTokens, readiness } = await setup();
  const alice = await devTokens.issue("alice");
  const bob = await devTokens.issue("bob");
  const run = await startRun(store, "alice", "c1");
  const kept = await startRun(store, "alice", "c2");
  const path = `/api/threads/${run.threadId}`;

  assert.equal((await send("DELETE", path)).status, 401);
  assert.deepEqual(await send("DELETE", path, { token: bob }), {
    status: 404,
    body: { error: { code: "not_found", message: "Thread not found" } },
  });
  assert.equal((await get(`${path}/messages`, alice)).status, 200);

  assert.deepEqual(await send("DELETE", path, { token: alice }), { status: 204, body: null });
  assert.equal((await get(`${path}/messages`, alice)).status, 404);
  assert.deepEqual(
    (await get("/api/threads", alice)).body.threads.map((t: { id: string }) => t.id),
    [kept.threadId],
  );
  assert.equal((await send("DELETE", path, { token: alice })).status, 404);
  assert.deepEqual(deletions, [
    ["bob", run.threadId],
    ["alice", run.threadId],
    ["alice", run.threadId],
  ]);
  readiness.stop();
  await store.close();
  await engine.close();
});
