import assert from "node:assert/strict";
import { apiBaseFor, asFolder, HistoryApi, historyVerdict } from "../../../src/client/history.ts";
import { HistoryRequestError } from "../../../src/client/mod.ts";
import type { HistoryMessage } from "../../../src/client/mod.ts";
import { FakeFetch, json } from "./_fakes.ts";

function api(fetch: FakeFetch, tokens: string[] = ["one", "two"]) {
  let stale = true;
  let token = "";
  return new HistoryApi({
    base: new URL("http://chat.test/"),
    fetch: fetch.fetch,
    tokens: {
      renewable: true,
      current: () => {
        if (stale) token = tokens.shift() ?? token;
        stale = false;
        return Promise.resolve(token);
      },
      invalidate: () => {
        stale = true;
      },
    },
  });
}

function message(role: "user" | "assistant", extra: Partial<HistoryMessage> = {}): HistoryMessage {
  return {
    id: role,
    role,
    text: role === "user" ? "hi" : "reply",
    runId: "r1",
    seq: 1,
    createdAt: "",
    runStatus: "completed",
    ...extra,
  };
}

Deno.test("HistoryApi asks a fresh token once after a 401, then gives up", async () => {
  const fetch = new FakeFetch((call) =>
    call.authorization === "Bearer two" ? json({ threads: [] }) : json({}, 401)
  );
  assert.deepEqual(await api(fetch).listThreads(), { items: [], nextCursor: undefined });
  assert.deepEqual(fetch.calls.map((c) => c.authorization), ["Bearer one", "Bearer two"]);
  const refused = new FakeFetch(() =>
    json({ error: { code: "unauthorized", message: "no" } }, 401)
  );
  await assert.rejects(() => api(refused).listThreads(), (error: HistoryRequestError) => {
    assert.deepEqual([error.status, error.code], [401, "unauthorized"]);
    return true;
  });
  assert.equal(refused.calls.length, 2);
});

Deno.test("HistoryApi.listMessages() shares a request in flight, and answers null for an unknown thread", async () => {
  const fetch = new FakeFetch((call) =>
    call.path.startsWith("/api/threads/t%201/")
      ? json({ messages: [], nextCursor: "c" })
      : json({}, 404)
  );
  const history = api(fetch);
  const [a, b] = await Promise.all([history.listMessages("t 1"), history.listMessages("t 1")]);
  assert.deepEqual(a, { items: [], nextCursor: "c" });
  assert.deepEqual(b, a);
  assert.deepEqual(fetch.calls.map((c) => c.path), ["/api/threads/t%201/messages"]);
  assert.equal(await history.listMessages("gone"), null);
});

Deno.test("HistoryApi.renameThread() and deleteThread() send PATCH {title} and DELETE", async () => {
  const thread = { id: "t1", title: "Sums", createdAt: "", updatedAt: "" };
  const fetch = new FakeFetch((call) =>
    call.method === "PATCH" ? json(thread) : new Response(null, { status: 204 })
  );
  const history = api(fetch);
  assert.deepEqual(await history.renameThread("t1", "Sums"), thread);
  await history.deleteThread("t1");
  assert.deepEqual(fetch.calls.map((c) => [c.method, c.path, c.body]), [
    ["PATCH", "/api/threads/t1", { title: "Sums" }],
    ["DELETE", "/api/threads/t1", undefined],
  ]);
  await assert.rejects(() => history.renameThread("t1", "x".repeat(201)), RangeError);
  await assert.rejects(() => history.renameThread("t1", "   "), RangeError);
  assert.equal(fetch.calls.length, 2, "a bad title is not sent");
});

Deno.test("historyVerdict() reads how a run ended from its messages", () => {
  assert.deepEqual(historyVerdict([message("user"), message("assistant")], "r1"), {
    kind: "ended",
    ending: { status: "completed", text: "reply" },
  });
  assert.deepEqual(historyVerdict([], "r1"), { kind: "unknown" });
  assert.deepEqual(historyVerdict([message("user", { runStatus: "running" })], "r1"), {
    kind: "running",
  });
  const error = { code: "timeout", message: "No answer" };
  assert.deepEqual(
    historyVerdict([
      message("user", { runStatus: "failed" }),
      message("assistant", { runStatus: "failed", text: "part", error }),
    ], "r1"),
    { kind: "ended", ending: { status: "failed", text: "part", error } },
  );
  assert.deepEqual(historyVerdict([message("user", { runStatus: "cancelled" })], "r1"), {
    kind: "ended",
    ending: { status: "cancelled", text: "" },
  });
  assert.deepEqual(historyVerdict([message("user", { runId: "other" })], "r1"), {
    kind: "unknown",
  });
});

Deno.test("apiBaseFor() is the folder of the WebSocket URL, so a base path carries over to REST", () => {
  assert.equal(apiBaseFor(new URL("ws://chat.test/ws")).href, "http://chat.test/");
  assert.equal(apiBaseFor(new URL("wss://chat.test/chat/ws")).href, "https://chat.test/chat/");
  assert.equal(asFolder(new URL("https://chat.test/chat?x=1")).href, "https://chat.test/chat/");
});

Deno.test("HistoryApi resolves its routes under a base path", async () => {
  const fetch = new FakeFetch(() => json({ threads: [] }));
  const history = new HistoryApi({
    base: new URL("https://chat.test/chat/"),
    fetch: fetch.fetch,
    tokens: { renewable: false, current: () => Promise.resolve("t"), invalidate: () => {} },
  });
  await history.listThreads({ limit: 5 });
  assert.deepEqual(fetch.calls.map((c) => c.path), ["/chat/api/threads?limit=5"]);
});
