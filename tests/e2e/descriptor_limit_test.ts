/**
 * A connection flood past the process's open-files limit: Deno's server stops accepting when
 * `accept` fails. agentsocket must not go down with it: the connections it holds keep working,
 * it listens again, and new connections succeed once descriptors are free.
 */
import assert from "node:assert/strict";
import { freePort } from "../_helpers/services.ts";
import { TestClient } from "../_helpers/test_client.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

Deno.test("past the descriptor limit the server keeps its connections and listens again", async () => {
  const port = freePort();
  const child = new Deno.Command("bash", {
    // A small soft limit, so that the flood reaches it; no MAX_CONNECTIONS, so nothing stops
    // the flood before the limit does.
    args: [
      "-c",
      `ulimit -n 120 && exec "${Deno.execPath()}" run --allow-net --allow-env --allow-read --allow-sys=hostname "${MAIN}"`,
    ],
    env: { PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn", NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = (async () => {
    let text = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
    return text;
  })();
  const url = `ws://127.0.0.1:${port}/ws`;
  const token = async (userId: string) => {
    const response = await fetch(`http://127.0.0.1:${port}/auth/dev-token`, {
      method: "POST",
      body: JSON.stringify({ userId }),
    });
    return (await response.json()).token as string;
  };
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        const live = await fetch(`http://127.0.0.1:${port}/health/live`);
        await live.body?.cancel();
        if (live.ok) break;
      } catch {
        // not listening yet
      }
      assert.ok(Date.now() < deadline, "the server never started");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => token(`flood-${i}`)));

    // The flood: more connections than the process has descriptors.
    const clients = Array.from({ length: 200 }, () => TestClient.open(url));
    const outcomes = await Promise.allSettled(clients.map((c, i) => c.hello(tokens[i % 20])));
    const held = clients.filter((_, i) => outcomes[i].status === "fulfilled");
    assert.ok(held.length > 50, `only ${held.length} connections were made`);
    assert.ok(held.length < 200, "the flood never reached the descriptor limit");

    // What it holds still works.
    for (const client of held.slice(0, 10)) {
      client.send({ type: "ping" });
      assert.equal((await client.nextOf("pong")).type, "pong");
    }
    // Free descriptors; the server listens again and takes new connections.
    await Promise.all(held.slice(0, 40).map((c) => c.close()));
    await Promise.all(
      clients.filter((c) => !held.includes(c)).map((c) => c.close().catch(() => {})),
    );
    const retryUntil = Date.now() + 20_000;
    for (;;) {
      const fresh = TestClient.open(url);
      try {
        assert.equal((await fresh.hello(tokens[0])).type, "ready");
        await fresh.close();
        break;
      } catch (error) {
        await fresh.close().catch(() => {});
        if (Date.now() > retryUntil) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    const alive = held.slice(40).filter((c) => c.socket.readyState === WebSocket.OPEN).length;
    assert.equal(alive, held.length - 40, "a held connection dropped");
    await Promise.all(held.slice(40).map((c) => c.close()));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
  }
  assert.match(await stderr, /listening again/);
});
