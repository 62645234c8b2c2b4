/**
 * agentsocket in a plain `Deno.serve` app, with an agent of its own and both hooks.
 * Run: `deno run --allow-net --allow-read examples/deno_serve.ts [port]` (no --allow-env:
 * agentsocket reads only what it is given), then open http://localhost:8000/.
 *
 * @module
 */
import { createAgentsocket } from "../mod.ts";
import type { Agent } from "../mod.ts";

/** Answers with the user's words in reverse order, streamed one word at a time. */
const reverser: Agent = {
  provider: "reverser",
  async *run({ text, signal }) {
    const words = text.split(/\s+/).filter((word) => word !== "").reverse();
    yield { kind: "thinking", text: `Reversing ${words.length} words.`, delta: false };
    for (const [i, word] of words.entries()) {
      await pause(100, signal); // stops at once on cancel
      yield { kind: "text", text: i === 0 ? word : ` ${word}` };
    }
    yield { kind: "usage", inputTokens: words.length, outputTokens: words.length };
  },
};

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

const socket = await createAgentsocket({
  agent: reverser,
  logLevel: "warn",
  // Refuse before anything runs; the client gets {"code":"refused","refusal":"too_long"}.
  beforeRun: ({ text }) =>
    text.length > 500 ? { refuse: { code: "too_long", message: "At most 500 characters" } } : {},
  // Each run's usage, e.g. for billing.
  onUsage: ({ userId, usage }) => console.log(`usage ${userId} ${usage.outputTokens}`),
});
await socket.start();
const server = Deno.serve({
  port: Number(Deno.args[0] ?? 8000),
  onListen: ({ port }) => console.log(`listening on http://localhost:${port}/`),
}, socket.fetch);

Deno.addSignalListener("SIGTERM", async () => {
  await socket.drain(); // runs in flight finish; sockets close 1012 so clients move on
  await server.shutdown();
  await socket.close();
  Deno.exit(0);
});
