/**
 * A close decided while the client is still sending reaches the client with its code. The
 * case from the field: a client sends a frame over the limit and, without waiting, a burst of
 * chats behind it. Deno tears a server socket down on the first frame it reads after
 * `close()`; with more frames unread, the kernel answers with a TCP reset and the client loses
 * the close frame (1006, or Deno's client reports a reset). The server therefore lingers: it
 * reads and discards until the client has been quiet for `CLOSE_LINGER_MS`, then closes.
 * With `CLOSE_LINGER_MS=0` (no linger) the same scenario loses the code.
 */
import assert from "node:assert/strict";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

const TRIES = 20;
/** Frames sent right behind the oversized one, in one burst. */
const BURST = 2000;

/** One try: ready, then a frame over the limit and a burst; resolves with the close code. */
async function oversizedThenBurst(server: ServerProcess, token: string): Promise<number> {
  const client = TestClient.open(server.wsUrl);
  const ready = await client.hello(token);
  const limit = ready.maxFrameBytes ?? 65_536;
  client.send({ type: "chat", id: "big", text: "x".repeat(limit) });
  for (let i = 0; i < BURST; i++) client.send({ type: "chat", id: `c${i}`, text: "hello" });
  return (await client.waitClosed()).code;
}

async function codesOfTries(server: ServerProcess): Promise<number[]> {
  const token = await server.devToken("sender");
  const codes: number[] = [];
  for (let i = 0; i < TRIES; i++) codes.push(await oversizedThenBurst(server, token));
  return codes;
}

Deno.test("a client that keeps sending after an oversized frame receives 1009, every time", async (t) => {
  await t.step(`${TRIES} tries, each closed 1009`, async () => {
    await using server = await startServer();
    const codes = await codesOfTries(server);
    assert.deepEqual(codes, codes.map(() => 1009), `close codes: ${codes.join(",")}`);
    await server.assertNoRaces();
  });
  await t.step("fails without the linger (CLOSE_LINGER_MS=0): the code is lost", async () => {
    await using server = await startServer({ env: { CLOSE_LINGER_MS: "0" } });
    const codes = await codesOfTries(server);
    assert.ok(codes.some((code) => code !== 1009), `every try got 1009: ${codes.join(",")}`);
  });
});
