/**
 * The stream phase's model: a local OpenAI-compatible server (the tests' fake server in its
 * fast mode, `tests/_helpers/fake_openai_server.ts`) that answers every chat completion with the
 * same long reply as fast as the client reads it, in its own process so that its CPU is not
 * agentsocket's. The first piece of every answer carries the time it was written
 * (`_stream_text.ts`).
 *
 * Environment: `PORT` (on 127.0.0.1), `MODEL_PIECES` (pieces per reply), `MODEL_CHUNKS_PER_WRITE`
 * (SSE chunks per write of the body, default 1). Routes besides the API, for the bench:
 * `/health/ready`, `/__bench/stats` (`connections`: answers being written) and
 * `/__bench/clock` (`{ now }`, this process's {@link preciseNow}).
 *
 * @module
 */
import { fastStream, startFakeOpenAiServer } from "../_helpers/fake_openai_server.ts";
import { BENCH_ROUTES } from "./_load_protocol.ts";
import { MODEL_CLOCK_ROUTE, preciseNow, stampPiece, streamTail } from "./_stream_text.ts";

function positive(name: string, fallback?: number): number {
  const raw = Deno.env.get(name);
  const value = raw === undefined ? fallback : Number(raw);
  if (value === undefined || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, received ${raw}`);
  }
  return value;
}

function main(): Promise<void> {
  const port = positive("PORT");
  const pieces = positive("MODEL_PIECES");
  const reply = fastStream({
    pieces: streamTail(pieces),
    first: () => stampPiece(preciseNow()),
    chunksPerWrite: positive("MODEL_CHUNKS_PER_WRITE", 1),
    model: "bench-model",
  });
  const server = startFakeOpenAiServer({
    port,
    routes: {
      "/health/ready": () => new Response("ready"),
      [BENCH_ROUTES.stats]: () => Response.json({ connections: server.openAnswers }),
      [MODEL_CLOCK_ROUTE]: () => Response.json({ now: preciseNow() }),
    },
  });
  server.fallback(reply);
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  return stopped.promise.then(() => server.close());
}

if (import.meta.main) {
  await main();
  Deno.exit(0);
}
