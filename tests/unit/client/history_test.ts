import assert from "node:assert/strict";
import { HistoryApi } from "../../../src/client/history.ts";
import { HistoryRequestError } from "../../../src/client/mod.ts";
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
