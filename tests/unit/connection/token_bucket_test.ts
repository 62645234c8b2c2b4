import assert from "node:assert/strict";
import { TokenBucket } from "../../../src/connection/mod.ts";

Deno.test("TokenBucket.take() allows a burst, then limits, then calls a whole burst more abusive", () => {
  const bucket = new TokenBucket({ perSecond: 10, burst: 3 });
  const verdicts = Array.from({ length: 6 }, () => bucket.take(0));
  assert.deepEqual(verdicts, ["ok", "ok", "ok", "limited", "limited", "abusive"]);
});

Deno.test("TokenBucket.take() refills at the sustained rate, up to the burst", () => {
  const bucket = new TokenBucket({ perSecond: 10, burst: 3 });
  for (let i = 0; i < 3; i++) bucket.take(0);
  assert.equal(bucket.take(0), "limited");
  assert.equal(bucket.take(200), "ok", "200 ms refill two tokens at 10/s");
  assert.equal(bucket.take(60_000), "ok");
  assert.equal(bucket.tokens, 2, "never more than the burst");
});
