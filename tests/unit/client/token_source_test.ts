import assert from "node:assert/strict";
import { TimerGroup } from "../../../src/client/timer_group.ts";
import { TokenSource } from "../../../src/client/token_source.ts";
import { jwtWithExp, ManualTimers, settle } from "./_fakes.ts";

Deno.test("TokenSource requires a token or getToken", () => {
  const timers = new TimerGroup(new ManualTimers());
  const channel = { isReady: () => true, sendRefresh: () => true };
  assert.throws(
    () => new TokenSource({ refreshBeforeExpiryMs: 0, timers, channel }),
    /"token" or "getToken" is required/,
  );
});

Deno.test("TokenSource.current() asks getToken once, and again only after invalidate()", async () => {
  let calls = 0;
  const tokens = new TokenSource({
    getToken: () => `t${++calls}`,
    refreshBeforeExpiryMs: 0,
    timers: new TimerGroup(new ManualTimers()),
    channel: { isReady: () => true, sendRefresh: () => true },
  });
  assert.equal(await tokens.current(), "t1");
  assert.equal(await tokens.current(), "t1");
  tokens.invalidate();
  assert.equal(await tokens.current(), "t2");
  const empty = new TokenSource({
    getToken: () => "",
    refreshBeforeExpiryMs: 0,
    timers: new TimerGroup(new ManualTimers()),
    channel: { isReady: () => true, sendRefresh: () => true },
  });
  await assert.rejects(() => empty.current(), /non-empty string/);
});

Deno.test("TokenSource.scheduleRefresh() sends a refresh only with a token that outlives the current one", async () => {
  const timers = new ManualTimers();
  const now = timers.now() / 1000;
  const fresh = [jwtWithExp(now + 100), jwtWithExp(now + 3600)];
  const sent: string[] = [];
  const tokens = new TokenSource({
    token: jwtWithExp(now + 100),
    getToken: () => fresh.shift()!,
    refreshBeforeExpiryMs: 60_000,
    timers: new TimerGroup(timers),
    channel: { isReady: () => true, sendRefresh: (token) => sent.push(token) > 0 },
  });
  tokens.scheduleRefresh();
  timers.advance(40_000);
  await settle();
  assert.deepEqual(sent, [], "the same exp cannot extend the connection");
  tokens.scheduleRefresh();
  timers.advance(0);
  await settle();
  assert.deepEqual(sent, [jwtWithExp(now + 3600)]);
  tokens.refreshed(now + 3600);
  assert.equal(await tokens.current(), jwtWithExp(now + 3600));
  tokens.stop();
});
