import assert from "node:assert/strict";
import {
  buildContext,
  type ContextMessage,
  estimateTokens,
} from "../../../../src/agent/llm/mod.ts";

const LIMITS = { historyMessages: 20, contextTokens: 16_000 };
const user = (text: string): ContextMessage => ({ role: "user", text });
const assistant = (text: string): ContextMessage => ({ role: "assistant", text });

function messages(history: ContextMessage[], text: string, limits = LIMITS) {
  const result = buildContext(history, text, limits);
  assert.ok(result.ok);
  return result.messages;
}

function assertAlternates(list: readonly ContextMessage[]) {
  assert.equal(list[0].role, "user");
  assert.equal(list.at(-1)!.role, "user");
  for (let i = 1; i < list.length; i++) assert.notEqual(list[i].role, list[i - 1].role);
}

Deno.test("buildContext() sends earlier turns oldest first, then the user's message", () => {
  const history = [user("hi"), assistant("hello"), user("2+2?"), assistant("4")];
  assert.deepEqual(messages(history, "thanks"), [...history, user("thanks")]);
  assert.deepEqual(messages([], "first"), [user("first")]);
});

Deno.test("buildContext() adds no assistant message for a run that left no text, and joins the user messages", () => {
  const history = [
    user("hi"),
    assistant("hello"),
    user("do it"),
    assistant(""),
    user("again"),
    assistant("  "),
  ];
  const list = messages(history, "please");
  assert.deepEqual(list, [user("hi"), assistant("hello"), user("do it\n\nagain\n\nplease")]);
  assertAlternates(list);
});

Deno.test("buildContext() keeps partial text of a failed run as an assistant message", () => {
  const history = [user("long story"), assistant("Once upon a")];
  assert.deepEqual(messages(history, "go on"), [...history, user("go on")]);
});

Deno.test("buildContext() keeps the newest historyMessages and never starts with an assistant message", () => {
  const history = [
    user("u1"),
    assistant("a1"),
    user("u2"),
    assistant("a2"),
    user("u3"),
    assistant("a3"),
  ];
  assert.deepEqual(messages(history, "now", { ...LIMITS, historyMessages: 4 }), [
    user("u2"),
    assistant("a2"),
    user("u3"),
    assistant("a3"),
    user("now"),
  ]);
  // Three newest: a2 would come first without its question, so it goes too.
  assert.deepEqual(messages(history, "now", { ...LIMITS, historyMessages: 3 }), [
    user("u3"),
    assistant("a3"),
    user("now"),
  ]);
  assert.deepEqual(messages(history, "now", { ...LIMITS, historyMessages: 0 }), [user("now")]);
});

Deno.test("buildContext() counts only turns with text against historyMessages", () => {
  const history = [
    user("u1"),
    assistant("a1"),
    user("u2"),
    assistant(""),
    user("u3"),
    assistant("a3"),
  ];
  assert.deepEqual(messages(history, "now", { ...LIMITS, historyMessages: 3 }), [
    user("u2\n\nu3"),
    assistant("a3"),
    user("now"),
  ]);
});

Deno.test("buildContext() drops whole oldest turns until the estimate fits contextTokens", () => {
  const big = "x".repeat(400); // 100 tokens
  const history = [user(big), assistant(big), user(big), assistant(big)];
  const result = buildContext(history, "y".repeat(40), { historyMessages: 20, contextTokens: 210 });
  assert.ok(result.ok);
  // 2 × 100 + 10 = 210 fits; 3 × 100 + 10 would not.
  assert.deepEqual(result.messages, [user(big), assistant(big), user("y".repeat(40))]);
  assert.equal(result.dropped, 2);
  const tokens = result.messages.reduce((sum, m) => sum + m.text.length, 0) / 4;
  assert.ok(tokens <= 210);
  // One token less: the oldest user turn goes, and then its answer, which would lead.
  const tighter = buildContext(history, "y".repeat(40), {
    historyMessages: 20,
    contextTokens: 209,
  });
  assert.ok(tighter.ok);
  assert.deepEqual(tighter.messages, [user("y".repeat(40))]);
  assert.equal(tighter.dropped, 4);
});

Deno.test("buildContext() fails with context_too_long only when the user's message alone exceeds the budget", () => {
  const exact = buildContext([user("earlier")], "z".repeat(400), {
    historyMessages: 20,
    contextTokens: 100,
  });
  assert.ok(exact.ok);
  assert.deepEqual(exact.messages, [user("z".repeat(400))]);
  const over = buildContext([], "z".repeat(401), { historyMessages: 20, contextTokens: 100 });
  assert.equal(over.ok, false);
  assert.ok(!over.ok && over.code === "context_too_long");
  assert.match(!over.ok ? over.message : "", /101 tokens.*100/);
});

Deno.test("buildContext() joins consecutive assistant messages too, so roles always alternate", () => {
  const history = [user("q"), assistant("part one"), assistant("part two"), user("q2"), user("q3")];
  const list = messages(history, "q4");
  assert.deepEqual(list, [user("q"), assistant("part one\n\npart two"), user("q2\n\nq3\n\nq4")]);
  assertAlternates(list);
});

Deno.test("estimateTokens() is characters / 4, rounded up", () => {
  assert.equal(estimateTokens(""), 0);
  assert.equal(estimateTokens("abcd"), 1);
  assert.equal(estimateTokens("abcde"), 2);
});
