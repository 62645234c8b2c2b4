import assert from "node:assert/strict";
import { createLogger, silentLogger } from "../../../src/_util/log.ts";
import { askBeforeRun, checkDecision } from "../../../src/runs/mod.ts";
import type { BeforeRunRequest, UsageReport } from "../../../src/runs/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";
import { alice, ScriptedAgent, setup, until } from "./_runs_harness.ts";

const chat = (id: string, text: string, threadId?: string) =>
  ({ type: "chat", id, text, ...(threadId ? { threadId } : {}) }) as const;

const request = {
  userId: "alice",
  threadId: "t1",
  runId: "r1",
  chatId: "c1",
  text: "hi",
  newThread: true,
};

function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger("debug", (line) => lines.push(JSON.parse(line))) };
}

Deno.test("checkDecision() lets nothing, a choice and a well-formed refusal through", () => {
  assert.deepEqual(checkDecision(undefined), { kind: "go", choice: {} });
  assert.deepEqual(checkDecision({}), { kind: "go", choice: {} });
  assert.deepEqual(checkDecision({ refuse: undefined, model: "m" }), {
    kind: "go",
    choice: { model: "m" },
  });
  assert.deepEqual(checkDecision({ model: "m", systemPrompt: "Be brief." }), {
    kind: "go",
    choice: { model: "m", systemPrompt: "Be brief." },
  });
  assert.deepEqual(checkDecision({ refuse: { code: "budget_exceeded" } }), {
    kind: "refuse",
    code: "budget_exceeded",
    message: "The chat was refused",
  });
});

Deno.test("checkDecision() fails what is not a decision, naming why", () => {
  const cases: [unknown, RegExp][] = [
    ["yes", /object or nothing/],
    [{ refuse: { code: "Budget Exceeded" } }, /snake_case/],
    [{ refuse: { code: "budget" }, model: "m" }, /cannot come with "model"/],
    [{ refuse: "budget" }, /\{code, message\?\}/],
    [{ refuse: { code: "budget", message: "" } }, /refuse.message/],
    [{ system_prompt: "x" }, /unknown field "system_prompt"/],
    [{ model: "" }, /"model"/],
    [{ systemPrompt: 42 }, /"systemPrompt"/],
  ];
  for (const [decision, why] of cases) {
    const verdict = checkDecision(decision);
    assert.equal(verdict.kind, "failed", JSON.stringify(decision));
    if (verdict.kind === "failed") assert.match(verdict.reason, why);
  }
});

Deno.test("askBeforeRun() turns a throw into a logged failure", async () => {
  const { lines, log } = recordingLog();
  const verdict = await askBeforeRun(
    () => {
      throw new Error("billing down");
    },
    request,
    { clock: new ManualClock(), log, timeoutMs: 1000 },
  );
  assert.equal(verdict.kind, "failed");
  assert.match(String(lines[0]?.reason), /billing down/);
  assert.equal(lines[0]?.level, "error");
});

Deno.test("askBeforeRun() gives up on a hook that hangs at the timeout and aborts its signal", async () => {
  const clock = new ManualClock();
  let seen: BeforeRunRequest | undefined;
  const asked = askBeforeRun(
    (r) => {
      seen = r;
      return new Promise(() => {});
    },
    request,
    { clock, log: silentLogger, timeoutMs: 1000 },
  );
  await until(() => seen !== undefined);
  clock.advance(999);
  assert.equal(seen!.signal.aborted, false);
  clock.advance(1);
  const verdict = await asked;
  assert.equal(verdict.kind, "failed");
  if (verdict.kind === "failed") assert.match(verdict.reason, /within 1000 ms/);
  assert.equal(seen!.signal.aborted, true);
});

Deno.test("RunOrchestrator.startChat() refuses with the hook's code and stores nothing", async () => {
  const asked: BeforeRunRequest[] = [];
  const h = await setup({
    hooks: {
      beforeRun: (r) => {
        asked.push(r);
        return { refuse: { code: "budget_exceeded", message: "Monthly budget used up" } };
      },
    },
  });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "hi"));
  assert.deepEqual(outcome, {
    ok: false,
    code: "refused",
    message: "Monthly budget used up",
    refusal: "budget_exceeded",
  });
  assert.deepEqual(
    [asked[0].userId, asked[0].chatId, asked[0].text, asked[0].newThread],
    ["alice", "c1", "hi", true],
  );
  assert.deepEqual((await h.store.listThreads("alice", { limit: 10 })).items, []);
  assert.equal(await h.store.getRun("alice", asked[0].runId), null);
  assert.deepEqual(h.names(), [], "no event published");
  // The id was not kept: the same chat again is a new chat, asked again.
  await h.orchestrator.startChat(alice, chat("c1", "hi"));
  assert.equal(asked.length, 2);
  await h.dispose();
});

Deno.test("RunOrchestrator.startChat() runs the checks before the hook and never asks it about a repeat", async () => {
  const agent = new ScriptedAgent();
  let asked = 0;
  const h = await setup({ agent, hooks: { beforeRun: () => void asked++ } });
  const first = await h.orchestrator.startChat(alice, chat("c1", "one"));
  assert.ok(first.ok);
  assert.equal(asked, 1);
  const repeat = await h.orchestrator.startChat(alice, chat("c1", "one"));
  assert.deepEqual(repeat.ok && repeat.ack, { ...first.ack, duplicate: true, status: "running" });
  const busy = await h.orchestrator.startChat(alice, chat("c2", "two", first.ack.threadId));
  assert.equal(busy.ok ? "" : busy.code, "thread_busy");
  const missing = await h.orchestrator.startChat(alice, chat("c3", "three", "no-such-thread"));
  assert.equal(missing.ok ? "" : missing.code, "not_found");
  assert.equal(asked, 1, "neither a repeat nor a refused chat reached the hook");
  agent.next({ kind: "reply", text: "ok" });
  agent.end();
  await until(() => h.names().includes("agent_completed"));
  await h.dispose();
});

Deno.test("RunOrchestrator gives the agent the model and system prompt beforeRun chose", async () => {
  const agent = new ScriptedAgent();
  const h = await setup({
    agent,
    hooks: {
      beforeRun: () => Promise.resolve({ model: "small-model", systemPrompt: "Be brief." }),
    },
  });
  const outcome = await h.orchestrator.startChat(alice, chat("c1", "hi"));
  assert.ok(outcome.ok);
  const seen = await agent.started.promise;
  assert.deepEqual([seen.model, seen.systemPrompt], ["small-model", "Be brief."]);
  agent.next({ kind: "reply", text: "ok" });
  agent.end();
  await until(() => h.names().includes("agent_completed"));
  await h.dispose();
});

Deno.test("RunOrchestrator.startChat() refuses unavailable, storing nothing, when beforeRun hangs", async () => {
  const clock = new ManualClock(Date.now());
  let signal: AbortSignal | undefined;
  const h = await setup({
    clock,
    hookTimeoutMs: 500,
    hooks: {
      beforeRun: (r) => {
        signal = r.signal;
        return new Promise(() => {});
      },
    },
  });
  const outcome = h.orchestrator.startChat(alice, chat("c1", "hi"));
  await until(() => signal !== undefined);
  clock.advance(500);
  const refused = await outcome;
  assert.equal(refused.ok ? "" : refused.code, "unavailable");
  assert.equal(signal?.aborted, true);
  assert.deepEqual((await h.store.listThreads("alice", { limit: 10 })).items, []);
  await h.dispose();
});

Deno.test("RunOrchestrator answers a repeat sent while beforeRun decides as the original is answered", async () => {
  for (const refuse of [true, false]) {
    const decision = Promise.withResolvers<void>();
    let asked = 0;
    const h = await setup({
      hooks: {
        beforeRun: async () => {
          asked++;
          await decision.promise;
          return refuse ? { refuse: { code: "over_quota" } } : undefined;
        },
      },
    });
    const original = h.orchestrator.startChat(alice, chat("c1", "hi"));
    await until(() => asked === 1);
    const repeat = h.orchestrator.startChat(alice, chat("c1", "hi"));
    decision.resolve();
    const [first, second] = await Promise.all([original, repeat]);
    assert.equal(asked, 1, "the repeat did not ask again");
    if (refuse) {
      assert.deepEqual(second, first);
      assert.equal(first.ok ? "" : first.refusal, "over_quota");
    } else {
      assert.ok(first.ok && second.ok);
      assert.deepEqual(second.ack, { ...first.ack, duplicate: true, status: "running" });
      await until(() => h.names().includes("agent_completed"));
    }
    await h.dispose();
  }
});

Deno.test("RunOrchestrator tells onUsage each run's usage once, and a failing onUsage harms nothing", async () => {
  for (const fails of [false, true]) {
    const agent = new ScriptedAgent();
    const reports: UsageReport[] = [];
    const { lines, log } = recordingLog();
    const h = await setup({
      agent,
      log,
      hooks: {
        onUsage: (report) => {
          reports.push(report);
          if (fails) return Promise.reject(new Error("ledger down"));
        },
      },
    });
    const outcome = await h.orchestrator.startChat(alice, chat("c1", "hi"));
    assert.ok(outcome.ok);
    await agent.started.promise;
    agent.next({ kind: "usage", inputTokens: 12, outputTokens: 5, finishReason: "stop" });
    agent.next({ kind: "reply", text: "ok" });
    agent.end();
    await until(() => h.names().includes("agent_completed"));
    await until(() => reports.length === 1);
    assert.deepEqual(reports, [{
      userId: "alice",
      threadId: outcome.ack.threadId,
      runId: outcome.ack.runId,
      status: "completed",
      usage: { inputTokens: 12, outputTokens: 5 },
      provider: "scripted",
    }]);
    if (fails) await until(() => lines.some((line) => line.msg === "onUsage failed"));
    assert.equal((await h.store.getRun("alice", outcome.ack.runId))?.status, "completed");
    await h.dispose();
  }
});

Deno.test("RunOrchestrator.drain() lets a chat that beforeRun is deciding start, and drains its run", async () => {
  const decision = Promise.withResolvers<void>();
  let asked = 0;
  const h = await setup({
    hooks: {
      beforeRun: async () => {
        asked++;
        await decision.promise;
      },
    },
  });
  const outcome = h.orchestrator.startChat(alice, chat("c1", "hi"));
  await until(() => asked === 1);
  let drained = false;
  const draining = h.orchestrator.drain(60_000).then(() => drained = true);
  const late = await h.orchestrator.startChat(alice, chat("c2", "late"));
  assert.equal(late.ok ? "" : late.code, "draining");
  assert.equal(drained, false, "the drain waits for the chat being decided");
  decision.resolve();
  const started = await outcome;
  assert.ok(started.ok);
  await draining;
  assert.equal(h.names().at(-1), "agent_completed", "its run finished before the drain ended");
  await h.dispose();
});
