import assert from "node:assert/strict";
import { IdleTimeoutError, IdleWatch } from "../../../../src/agent/llm/mod.ts";
import { manualClock } from "../../../_helpers/manual_clock.ts";

/** A fetch whose response and body the test controls; no network. */
function controlledFetch() {
  const response = Promise.withResolvers<Response>();
  let body!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (c) => void (body = c) });
  const fetch: typeof globalThis.fetch = () => response.promise;
  return {
    fetch,
    respond: () => response.resolve(new Response(stream, { status: 200 })),
    push: (text: string) => body.enqueue(new TextEncoder().encode(text)),
    end: () => body.close(),
  };
}

/** Lets the stream machinery run its queued microtasks until a read is watched (bounded). */
async function untilWatched(clock: ReturnType<typeof manualClock>): Promise<void> {
  for (let i = 0; i < 100 && clock.pending === 0; i++) await Promise.resolve();
  assert.equal(clock.pending, 1, "a pending read is watched");
}

Deno.test("IdleWatch.wrap() watches the wait for the response and each read, and any byte resets it", async () => {
  const clock = manualClock();
  const watch = new IdleWatch(1_000, clock);
  const upstream = controlledFetch();
  const pending = watch.wrap(upstream.fetch)("http://model.invalid/v1/chat/completions");
  assert.equal(clock.pending, 1); // waiting for the response
  clock.advance(999);
  upstream.respond();
  const reader = (await pending).body!.getReader();
  assert.equal(clock.pending, 0); // nobody reads: nothing is watched
  clock.advance(60_000);
  assert.equal(watch.fired, false);

  const first = reader.read();
  await untilWatched(clock);
  clock.advance(999);
  upstream.push(": keep-alive\n\n");
  assert.deepEqual(new TextDecoder().decode((await first).value), ": keep-alive\n\n");
  const second = reader.read();
  await untilWatched(clock);
  clock.advance(999); // 1998 ms since the request, but 999 since the last byte
  assert.equal(watch.fired, false);
  clock.advance(1);
  assert.equal(watch.fired, true);
  assert.ok(watch.signal.reason instanceof IdleTimeoutError);
  assert.equal(watch.signal.reason.timeoutMs, 1_000);
  upstream.end();
  assert.equal((await second).done, true);
});

Deno.test("IdleWatch.received() stops the timer, and a fired watch stays fired", () => {
  const clock = manualClock();
  const watch = new IdleWatch(100, clock);
  watch.waiting();
  watch.received();
  clock.advance(1_000);
  assert.equal(watch.fired, false);
  watch.waiting();
  watch.waiting(); // one timer, not two
  assert.equal(clock.pending, 1);
  clock.advance(100);
  assert.equal(watch.fired, true);
  watch.waiting();
  assert.equal(clock.pending, 0);
});
