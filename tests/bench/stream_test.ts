/**
 * Unit tests of the stream phase's own logic: the stamped first piece, the busiest-second count,
 * the delta bound, the phase's flags, and the fake model server's fast mode as the phase's model
 * server and its direct reader use it. Run with `deno test -A tests/bench/`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fastStream, startFakeOpenAiServer } from "../_helpers/fake_openai_server.ts";
import { parseSettings } from "./_settings.ts";
import { divergence, streamDirect } from "./_stream_runs.ts";
import { maxInWindow, parseStamp, preciseNow, stampPiece, streamTail } from "./_stream_text.ts";
import { PHASES } from "./phases/mod.ts";
import type { PhaseContext } from "./phases/mod.ts";
import { deltaBound, streamSizes } from "./phases/stream_phase.ts";

const noEnv = { get: (_name: string) => undefined };

function contextOf(args: string[]): PhaseContext {
  return {
    settings: parseSettings(args, PHASES, noEnv),
    resultsDir: "/nonexistent",
    note: () => {},
  };
}

Deno.test("parseStamp() reads back what stampPiece() wrote, to the microsecond", () => {
  const now = preciseNow();
  const piece = stampPiece(now);
  assert.match(piece, /^\[t=\d+\.\d{3}\] $/);
  assert.ok(Math.abs(parseStamp(piece + " w1 w2")! - now) < 0.001);
  assert.equal(parseStamp(" w1 [t=1.000] "), undefined);
});

Deno.test("streamTail() gives distinct pieces after the first", () => {
  const tail = streamTail(4);
  assert.deepEqual(tail, [" w1", " w2", " w3"]);
  assert.deepEqual(streamTail(1), []);
});

Deno.test("maxInWindow() counts the busiest window, both ends included", () => {
  assert.equal(maxInWindow([], 1000), 0);
  // Every 40 ms for 2 s: 26 events in any closed second (0, 40, …, 1000).
  const every40 = Array.from({ length: 51 }, (_, i) => i * 40);
  assert.equal(maxInWindow(every40, 1000), 26);
  assert.equal(maxInWindow([0, 10, 20, 2000, 2001], 1000), 3);
});

Deno.test("deltaBound() is 1000 / STREAM_FLUSH_MS + 1, unbounded without coalescing", () => {
  assert.equal(deltaBound(40), 26);
  assert.equal(deltaBound(30), 34);
  assert.equal(deltaBound(0), Infinity);
});

Deno.test("streamSizes() takes the phase's flags and refuses bad ones", () => {
  const full = streamSizes(contextOf([]));
  assert.deepEqual([full.runs, full.pieces, full.flushMs, full.repeats], [100, 2000, 40, 3]);
  assert.ok(full.runTimeoutMs >= 200_000, "1 ms per piece at least");
  const quick = streamSizes(contextOf(["--quick", "--stream-runs=3", "--stream-flush-ms=0"]));
  assert.deepEqual([quick.runs, quick.pieces, quick.flushMs, quick.repeats], [3, 200, 0, 3]);
  assert.throws(() => streamSizes(contextOf(["--stream-pieces=1"])), RangeError);
  assert.throws(() => streamSizes(contextOf(["--stream-runs=many"])), RangeError);
});

Deno.test("fastStream() answers the stamped first piece, every piece in order, usage and [DONE]", async () => {
  let firsts = 0;
  await using server = startFakeOpenAiServer().fallback(
    fastStream({ pieces: streamTail(300), first: () => `first${++firsts}`, chunksPerWrite: 7 }),
  );
  const read = async (includeUsage: boolean) => {
    const response = await fetch(`${server.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "m",
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
      }),
    });
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    return (await response.text()).split("\n\n").filter((e) => e !== "");
  };
  const events = await read(true);
  assert.equal(events.at(-1), "data: [DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice("data: ".length)));
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
  assert.equal(text, "first1" + streamTail(300).join(""));
  assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");
  assert.equal(chunks.at(-1).usage.completion_tokens, 300);
  const again = await read(false);
  assert.ok(!again.some((e) => e.includes('"usage"')), "no usage chunk unless asked");
  assert.equal(firsts, 2, "the first piece is made for each answer");
  assert.equal(server.openAnswers, 0);
});

Deno.test("fastStream() stops writing when the client goes away", async () => {
  await using server = startFakeOpenAiServer().fallback(
    fastStream({ pieces: streamTail(200_000), first: () => "x" }),
  );
  const response = await fetch(`${server.baseUrl}/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "m", stream: true }),
  });
  const reader = response.body!.getReader();
  await reader.read();
  await reader.cancel();
  await server.requests[0].ended;
  assert.equal(server.requests[0].wasAborted, true);
});

Deno.test("streamDirect() counts every piece and times the stamped first one", async () => {
  await using server = startFakeOpenAiServer({
    routes: { "/health/ready": () => new Response("ready") },
  }).fallback(fastStream({ pieces: streamTail(500), first: () => stampPiece(preciseNow()) }));
  const root = server.baseUrl.replace(/\/v1$/, "");
  const outcome = await streamDirect(root, { pieces: 500, timeoutMs: 10_000 });
  assert.equal(outcome.failure, undefined);
  assert.equal(outcome.pieces, 500);
  assert.equal(outcome.textMismatch, undefined);
  assert.ok(outcome.firstPieceMs >= 0 && outcome.firstPieceMs < 10_000, `${outcome.firstPieceMs}`);
  assert.equal((await fetch(`${root}/health/ready`)).status, 200);
  const short = await streamDirect(root, { pieces: 501, timeoutMs: 10_000 });
  assert.match(short.textMismatch ?? "", /500 pieces received of 501/);
});

Deno.test("divergence() shows where two texts part", () => {
  assert.equal(divergence("abc", "abc"), 'from offset 3: "abc" vs "abc"');
  assert.match(divergence("[t=1] w1 w2 w3", "[t=1] w1 w1 w2 w3"), /from offset 10: .* vs .*w1 w1/);
});
