/**
 * Model-backed runs end to end: `main.ts` as a real process with `AGENT=llm`, on real
 * PostgreSQL and Redis, pointed at a local OpenAI-compatible server the test scripts (no model
 * is reachable from here). Gates in the scripted streams hold a run open for exactly as long as
 * a test needs, with no timing assumption.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { EventFrame, HistoryMessage } from "../../src/protocol/mod.ts";
import { Gate, httpError, startFakeOpenAiServer, stream } from "../_helpers/fake_openai_server.ts";
import type { FakeOpenAiServer } from "../_helpers/fake_openai_server.ts";
import { createServiceEnv } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);
const isTerminal = (event: EventFrame) => TERMINAL.has(event.name);

function llmEnv(model: FakeOpenAiServer, extra: Record<string, string> = {}) {
  return {
    AGENT: "llm",
    LLM_BASE_URL: model.baseUrl,
    LLM_MODEL: "test-model",
    LLM_SYSTEM_PROMPT: "You are terse.",
    STREAM_FLUSH_MS: "20",
    ...extra,
  };
}

async function connect(server: ServerProcess, userId = "alice"): Promise<TestClient> {
  const client = TestClient.open(server.wsUrl);
  await client.hello(await server.devToken(userId));
  return client;
}

function pieces(events: readonly EventFrame[]): string {
  return events.filter((e) => e.name === "agent_delta").map((e) => String(e.data.text)).join("");
}

async function history(server: ServerProcess, threadId: string): Promise<HistoryMessage[]> {
  const token = await server.devToken("alice");
  const response = await fetch(`${server.url}/api/threads/${threadId}/messages`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  return ((await response.json()) as { messages: HistoryMessage[] }).messages;
}

Deno.test("AGENT=llm streams a model's reply, its reasoning and a tool call, on PostgreSQL and Redis", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  model.reply(
    stream()
      .reasoning("The user wants ", "arithmetic.")
      .text("Let me ", "compute.")
      .toolCall({ id: "call_0", name: "calculator", arguments: ['{"expr', 'ession":"6*7"}'] })
      .usage({ promptTokens: 50, completionTokens: 9 }),
    stream().text("It is ", "42.").usage({ promptTokens: 80, completionTokens: 4 }),
  );
  await using server = await startServer({ env: { ...services.env, ...llmEnv(model) } });
  const client = await connect(server);
  client.send({ type: "chat", id: "c1", text: "what is 6*7?" });
  const ack = await client.nextOf("ack");
  const events = await client.eventsUntil(isTerminal);
  const names = events.map((e) => e.name);
  assert.deepEqual(names.filter((n) => n !== "agent_delta" && n !== "agent_thinking"), [
    "agent_started",
    "tool_executing",
    "tool_completed",
    "agent_completed",
  ]);
  assert.ok(names.indexOf("agent_thinking") < names.indexOf("agent_delta"), "reasoning first");
  assert.ok(names.lastIndexOf("agent_delta") > names.indexOf("tool_completed"), "then more reply");
  const executing = events.find((e) => e.name === "tool_executing")!;
  assert.deepEqual(executing.data.input, { expression: "6*7" });
  assert.notEqual(executing.data.toolCallId, "call_0", "ids are the server's, unique per user");
  assert.deepEqual(events.find((e) => e.name === "tool_completed")!.data.output, { value: "42" });
  const terminal = events.at(-1)!;
  assert.equal(terminal.name, "agent_completed");
  assert.equal(terminal.data.text, "Let me compute.\n\nIt is 42.");
  assert.equal(pieces(events), terminal.data.text, "the pieces concatenate to the reply");
  assert.deepEqual(terminal.data.usage, { inputTokens: 130, outputTokens: 13 });
  assert.equal(terminal.data.finishReason, "stop");
  for (let i = 1; i < events.length; i++) assert.equal(events[i].seq, events[i - 1].seq + 1);

  // What the model was sent: the system prompt, the message, the tools, then the tool result.
  const [first, second] = model.requests;
  assert.equal(first.body.stream, true);
  assert.deepEqual(first.body.stream_options, { include_usage: true });
  assert.deepEqual(first.body.messages.map((m: { role: string }) => m.role), ["system", "user"]);
  assert.deepEqual(
    first.body.tools.map((t: { function: { name: string } }) => t.function.name).sort(),
    ["calculator", "echo"],
  );
  assert.equal(second.body.messages.at(-1).role, "tool");
  assert.match(String(second.body.messages.at(-1).content), /42/);

  const messages = await history(server, ack.threadId);
  assert.deepEqual(
    messages.map((m) => [m.role, m.text, m.runStatus]),
    [["user", "what is 6*7?", "completed"], [
      "assistant",
      "Let me compute.\n\nIt is 42.",
      "completed",
    ]],
  );
  await client.close();
});

Deno.test("AGENT=llm: cancel mid-stream aborts the model's request and stores the reply so far", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.reply(stream().text("Once upon", " a time").gate(hold).text(" never sent"));
  await using server = await startServer({ env: { ...services.env, ...llmEnv(model) } });
  const client = await connect(server);
  client.send({ type: "chat", id: "c1", text: "tell me a story" });
  const ack = await client.nextOf("ack");
  await hold.reached;
  const before = await client.eventsUntil((e) => pieces([e]) !== "" && e.name === "agent_delta");
  client.send({ type: "cancel", runId: ack.runId });
  const rest = await client.eventsUntil(isTerminal);
  const events = [...before, ...rest];
  const terminal = events.at(-1)!;
  assert.equal(terminal.name, "agent_cancelled");
  assert.equal(terminal.data.text, "Once upon a time");
  assert.equal(pieces(events), "Once upon a time");
  await model.requests[0].aborted; // the upstream request was aborted, not left running
  hold.release();
  const messages = await history(server, ack.threadId);
  assert.deepEqual(messages.at(-1), {
    ...messages.at(-1),
    role: "assistant",
    text: "Once upon a time",
    runStatus: "cancelled",
  });
  await client.close();
});

Deno.test("AGENT=llm: a client that reconnects mid-stream resumes and sees every piece exactly once", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const [first, second] = [new Gate(), new Gate()];
  model.reply(stream().text("Hel", "lo").gate(first).text(" wor", "ld").gate(second).text("!"));
  await using server = await startServer({ env: { ...services.env, ...llmEnv(model) } });
  const a = await connect(server);
  const ready = a.frames[0] as { epoch: string };
  a.send({ type: "chat", id: "c1", text: "greet" });
  await a.nextOf("ack");
  await first.reached;
  const seen = await a.eventsUntil((e) => e.name === "agent_delta");
  await a.close();
  first.release();
  await second.reached;
  const b = TestClient.open(server.wsUrl);
  const resumed = await b.hello(await server.devToken("alice"), {
    epoch: ready.epoch,
    after: seen.at(-1)!.seq,
  });
  assert.equal(resumed.resumed, true);
  second.release();
  const rest = await b.eventsUntil(isTerminal);
  const all = [...seen, ...rest];
  for (let i = 1; i < all.length; i++) {
    assert.equal(all[i].seq, all[i - 1].seq + 1, "no gap, no repeat");
  }
  assert.equal(pieces(all), "Hello world!");
  assert.equal(all.at(-1)!.data.text, "Hello world!");
  await b.close();
});

Deno.test("AGENT=llm on two instances: the run on one streams to the other, and a cancel there reaches it", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.reply(stream().text("Thinking about it").gate(hold).text(" and done."));
  const env = { ...services.env, ...llmEnv(model) };
  await using a = await startServer({ env });
  await using b = await startServer({ env });
  const onA = await connect(a);
  const onB = await connect(b);
  onA.send({ type: "chat", id: "c1", text: "long one" });
  const ack = await onA.nextOf("ack");
  await hold.reached;
  const seenOnB = await onB.eventsUntil((e) => e.name === "agent_delta");
  assert.equal(seenOnB[0].name, "agent_started");
  onB.send({ type: "cancel", runId: ack.runId });
  const restOnB = await onB.eventsUntil(isTerminal);
  const terminal = restOnB.at(-1)!;
  assert.equal(terminal.name, "agent_cancelled");
  assert.equal(terminal.data.text, "Thinking about it");
  await model.requests[0].aborted;
  const onASide = await onA.eventsUntil(isTerminal);
  assert.equal(onASide.at(-1)!.seq, terminal.seq, "both connections see the same seq");
  hold.release();
  await onA.close();
  await onB.close();
});

Deno.test("AGENT=llm: an instance killed mid-stream has its run ended interrupted, with the reply rebuilt", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.reply(stream().text("Partial ", "answer").gate(hold).text(" lost"));
  const env = { ...services.env, ...llmEnv(model), RUN_LEASE_MS: "1000" };
  const doomed = await startServer({ env });
  await using survivor = await startServer({ env });
  const watcher = await connect(survivor);
  const owner = await connect(doomed);
  owner.send({ type: "chat", id: "c1", text: "go" });
  const ack = await owner.nextOf("ack");
  await hold.reached;
  // Both pieces published (the second may wait out the flush window) before the kill.
  let seen = "";
  await watcher.eventsUntil((e) => (seen += pieces([e])) === "Partial answer");
  await doomed.stop("SIGKILL");
  const rest = await watcher.eventsUntil(isTerminal, 30_000);
  const terminal = rest.at(-1)!;
  assert.equal(terminal.name, "agent_failed");
  assert.deepEqual(terminal.data.error, {
    code: "interrupted",
    message: "The instance running this run stopped",
  });
  assert.equal(terminal.data.text, "Partial answer");
  const messages = await history(survivor, ack.threadId);
  assert.deepEqual(
    [messages.at(-1)!.text, messages.at(-1)!.runStatus],
    ["Partial answer", "failed"],
  );
  hold.release();
  await watcher.close();
});

Deno.test("AGENT=llm: the provider key never reaches a frame, a log line or /metrics", async () => {
  const key = `sk-e2e-${crypto.randomUUID()}`;
  await using model = startFakeOpenAiServer();
  model.reply(
    // Providers echo keys in their errors ("Incorrect API key provided: sk-...").
    httpError(401, {
      body: JSON.stringify({ error: { message: `Incorrect API key provided: ${key}` } }),
    }),
    stream().text("fine"),
  );
  await using server = await startServer({
    env: { ...llmEnv(model, { LLM_API_KEY: key }), LOG_LEVEL: "debug" },
  });
  const client = await connect(server);
  client.send({ type: "chat", id: "c1", text: "one" });
  const failed = await client.eventsUntil(isTerminal);
  assert.equal(
    (failed.at(-1)!.data.error as { code: string }).code,
    "provider_rejected",
  );
  client.send({ type: "chat", id: "c2", text: "two" });
  await client.eventsUntil(isTerminal);
  assert.equal(
    model.requests[0].headers.get("authorization"),
    `Bearer ${key}`,
    "the key was in use",
  );
  const metrics = await server.metrics();
  await client.close();
  await server.stop();
  const everything = [JSON.stringify(client.frames), server.logs(), metrics].join("\n");
  assert.equal(everything.includes(key), false, "the key leaked");
  assert.equal(everything.includes(key.slice(7, 20)), false, "part of the key leaked");
});

Deno.test("DELETE /api/threads/:id cancels a streaming run, and its events are never replayed", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.reply(stream().text("Secret ", "draft").gate(hold).text(" never"));
  await using server = await startServer({ env: { ...services.env, ...llmEnv(model) } });
  const client = await connect(server);
  const ready = client.frames[0] as { epoch: string };
  client.send({ type: "chat", id: "c1", text: "write a draft" });
  const ack = await client.nextOf("ack");
  await hold.reached;
  await client.eventsUntil((e) => e.name === "agent_delta");
  const token = await server.devToken("alice");
  const deleted = await fetch(`${server.url}/api/threads/${ack.threadId}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(deleted.status, 204);
  await model.requests[0].aborted; // the run was cancelled, its model request aborted
  hold.release();
  const gone = await fetch(`${server.url}/api/threads/${ack.threadId}/messages`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(gone.status, 404);
  await gone.body?.cancel();
  // A client resuming from before the run replays nothing of the deleted thread.
  const fresh = TestClient.open(server.wsUrl);
  const again = await fresh.hello(token, { epoch: ready.epoch, after: 0 });
  assert.equal(again.resumed, true);
  assert.deepEqual(again.activeRuns, []);
  const replay = await fresh.sync();
  assert.deepEqual(replay.filter((f) => f.type === "event"), [], "nothing of it replayed");
  await fresh.close();
  await client.close();
});

Deno.test("MAX_ACTIVE_RUNS_PER_USER counts a user's runs across two instances", async () => {
  await using services = await createServiceEnv();
  await using model = startFakeOpenAiServer();
  const hold = new Gate();
  model.fallback(stream().text("busy").gate(hold).text(" done"));
  const env = { ...services.env, ...llmEnv(model), MAX_ACTIVE_RUNS_PER_USER: "2" };
  await using a = await startServer({ env });
  await using b = await startServer({ env });
  const onA = await connect(a);
  const onB = await connect(b);
  onA.send({ type: "chat", id: "c1", text: "one" });
  await onA.nextOf("ack");
  onB.send({ type: "chat", id: "c2", text: "two" });
  await onB.nextOf("ack");
  onA.send({ type: "chat", id: "c3", text: "three" });
  const refused = await onA.nextOf("error");
  assert.deepEqual([refused.code, refused.ref], ["too_many_runs", "c3"]);
  hold.release();
  await onA.eventsUntil((e) => e.name === "agent_completed");
  await onA.eventsUntil((e) => e.name === "agent_completed");
  onA.send({ type: "chat", id: "c3", text: "three" });
  assert.equal((await onA.nextOf("ack")).id, "c3", "a refused chat stored nothing: its id is free");
  await onA.close();
  await onB.close();
});
