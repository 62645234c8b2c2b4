/**
 * The two embedding examples, run as real processes the way their headers say: `deno run
 * --allow-net --allow-read examples/<file> 0` (a free port, and never `--allow-env`, so any
 * read of the environment would crash them), driven by real WebSocket clients.
 *
 * @module
 */
import assert from "node:assert/strict";
import { AssertionError } from "node:assert/strict";
import type { ErrorFrame, EventFrame } from "../../src/protocol/mod.ts";
import { TestClient } from "../_helpers/test_client.ts";

const ROOT = new URL("../../", import.meta.url);
const START_TIMEOUT_MS = 60_000;

/** One example, running. Its stdout and stderr are kept; `line()` waits for a stdout line. */
class ExampleProcess {
  readonly port: number;
  readonly base: string;
  #child: Deno.ChildProcess;
  #out: string[];
  #err: string[];
  /** Called by the pumps on each new line; `line()` sets it. */
  #wake: { fn: () => void };
  #pumps: Promise<void>[];

  private constructor(
    child: Deno.ChildProcess,
    port: number,
    base: string,
    state: { out: string[]; err: string[]; wake: { fn: () => void }; pumps: Promise<void>[] },
  ) {
    this.#child = child;
    this.port = port;
    this.base = base;
    this.#out = state.out;
    this.#err = state.err;
    this.#wake = state.wake;
    this.#pumps = state.pumps;
  }

  /** Starts `examples/<file>` on a free port and waits for its `listening on` line. */
  static async start(file: string, base = ""): Promise<ExampleProcess> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-net", "--allow-read", `examples/${file}`, "0"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out: string[] = [];
    const err: string[] = [];
    const wake = { fn: () => {} };
    const pump = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
      let partial = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop()!;
        into.push(...lines);
        wake.fn();
      }
      if (partial !== "") into.push(partial);
      wake.fn();
    };
    const pumps = [pump(child.stdout, out), pump(child.stderr, err)];
    const probe = new ExampleProcess(child, 0, base, { out, err, wake, pumps });
    let port: number;
    try {
      const line = await probe.line(/^listening on http:\/\/localhost:(\d+)\//, START_TIMEOUT_MS);
      port = Number(/:(\d+)\//.exec(line)![1]);
    } catch (error) {
      await probe.kill();
      throw error;
    }
    return new ExampleProcess(child, port, base, { out, err, wake, pumps });
  }

  /** `http://127.0.0.1:<port><base><path>` */
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${this.base}${path}`;
  }

  /** A dev token from the example's own dev-token route. */
  async token(userId: string): Promise<string> {
    const response = await fetch(this.url("/auth/dev-token"), {
      method: "POST",
      body: JSON.stringify({ userId }),
    });
    assert.equal(response.status, 200, await response.clone().text());
    return ((await response.json()) as { token: string }).token;
  }

  /** A client past `ready` on the example's WebSocket route. */
  async client(userId: string): Promise<TestClient> {
    const token = await this.token(userId);
    const client = TestClient.open(`ws://127.0.0.1:${this.port}${this.base}/ws`);
    await client.hello(token);
    return client;
  }

  /** Waits for a stdout line matching `pattern`. */
  async line(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.#out.find((line) => pattern.test(line));
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new AssertionError({ message: `no line ${pattern} in time\n${this.output()}` });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake.fn = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Sends SIGTERM and resolves with the exit status once the output is read. */
  async terminate(): Promise<Deno.CommandStatus> {
    this.#child.kill("SIGTERM");
    const status = await this.#child.status;
    await Promise.all(this.#pumps);
    return status;
  }

  /** Kills the process if it still runs (cleanup after a failure). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.#child.status;
    await Promise.all(this.#pumps);
  }

  output(): string {
    return `stdout:\n${this.#out.join("\n")}\nstderr:\n${this.#err.join("\n")}`;
  }
}

/** Sends a chat and reads its events up to the terminal one. */
async function chat(client: TestClient, id: string, text: string): Promise<EventFrame[]> {
  client.send({ type: "chat", id, text });
  const ack = await client.nextOf("ack");
  assert.equal(ack.id, id);
  return await runEvents(client, ack.runId);
}

const TERMINAL = new Set(["agent_completed", "agent_failed", "agent_cancelled"]);

async function runEvents(client: TestClient, runId: string, seen: EventFrame[] = []) {
  const events = await client.eventsUntil((e) => e.runId === runId && TERMINAL.has(e.name));
  return [...seen, ...events].filter((e) => e.runId === runId);
}

Deno.test("examples/deno_serve.ts streams its own agent's reply, reports usage and refuses through beforeRun", async () => {
  const app = await ExampleProcess.start("deno_serve.ts");
  try {
    const page = await fetch(app.url("/"));
    assert.match(await page.text(), /<title>agentsocket<\/title>/, "the page is served");
    const client = await app.client("alice");
    const events = await chat(client, "c1", "one two three");
    const names = events.map((e) => e.name);
    assert.deepEqual(
      [names[0], names[1], names.at(-1)],
      ["agent_started", "agent_thinking", "agent_completed"],
    );
    assert.ok(names.includes("agent_delta"), "the reply was streamed");
    assert.deepEqual(events.at(-1)!.data, {
      text: "three two one",
      usage: { inputTokens: 3, outputTokens: 3 },
    });
    await app.line(/^usage alice 3$/); // onUsage heard of it

    client.send({ type: "chat", id: "c2", text: "x".repeat(501) });
    const refused = await client.nextOf("error") as ErrorFrame;
    assert.deepEqual(refused, {
      type: "error",
      code: "refused",
      message: "At most 500 characters",
      ref: "c2",
      refusal: "too_long",
    });
    await client.close();
    assert.equal((await app.terminate()).code, 0, app.output());
  } finally {
    await app.kill();
  }
});

Deno.test("examples/hono_app.ts serves its own / beside agentsocket under /chat, asks approval and refuses bad input", async () => {
  const app = await ExampleProcess.start("hono_app.ts", "/chat");
  try {
    const home = await fetch(`http://127.0.0.1:${app.port}/`);
    assert.match(await home.text(), /The shop's own home page/);
    const ready = await fetch(app.url("/health/ready"));
    assert.equal(ready.status, 200, await ready.text());
    const page = await fetch(`http://127.0.0.1:${app.port}/chat`); // redirected to /chat/
    assert.equal(new URL(page.url).pathname, "/chat/");
    assert.match(await page.text(), /<title>agentsocket<\/title>/);
    const outside = await fetch(`http://127.0.0.1:${app.port}/health/ready`);
    assert.equal(outside.status, 404, "agentsocket's routes live under /chat only");
    await outside.body?.cancel();
    const client = await app.client("alice");

    // The approval flow: requested, approved from this connection, then the call runs.
    client.send({ type: "chat", id: "c1", text: "refund A-1001" });
    const ack = await client.nextOf("ack");
    const asked = await client.eventsUntil((e) => e.name === "tool_approval_requested");
    const request = asked.at(-1)!.data;
    assert.equal(request.tool, "refund_order");
    assert.deepEqual(request.input, { orderId: "A-1001" });
    client.send({
      type: "approve",
      runId: ack.runId,
      toolCallId: request.toolCallId,
      approved: true,
    });
    const approved = await runEvents(client, ack.runId, asked);
    assert.deepEqual(approved.map((e) => e.name), [
      "agent_started",
      "tool_approval_requested",
      "tool_approval_resolved",
      "tool_executing",
      "tool_completed",
      "agent_completed",
    ]);
    assert.deepEqual(
      [approved[2].data.approved, approved[2].data.by],
      [true, "user"],
    );
    assert.deepEqual(approved[4].data.output, { refunded: "A-1001" });
    assert.equal(approved[5].data.text, "Refunded A-1001.");

    // Input that does not match the schema never reaches execute, nor a person; the run goes on.
    const invalid = await chat(client, "c2", "refund banana");
    assert.deepEqual(invalid.map((e) => e.name), [
      "agent_started",
      "tool_completed",
      "agent_completed",
    ]);
    const error = invalid[1].data.error as { code: string };
    assert.equal(error.code, "invalid_input");
    assert.match(String(invalid[2].data.text), /^No refund: /);
    await client.close();
    assert.equal((await app.terminate()).code, 0, app.output());
  } finally {
    await app.kill();
  }
});

Deno.test("SIGTERM drains an example: the run in flight ends, the socket closes 1012, the app exits 0", async () => {
  const app = await ExampleProcess.start("deno_serve.ts");
  try {
    const client = await app.client("alice");
    const words = Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ");
    client.send({ type: "chat", id: "c1", text: words });
    const ack = await client.nextOf("ack");
    const before = await client.eventsUntil((e) => e.name === "agent_delta");
    const exited = app.terminate(); // while the run streams
    const events = await runEvents(client, ack.runId, before);
    const last = events.at(-1)!;
    if (last.name === "agent_failed") {
      assert.equal((last.data.error as { code: string }).code, "shutdown");
    } else {
      assert.equal(last.name, "agent_completed");
      assert.equal(last.data.text, words.split(" ").reverse().join(" "));
    }
    assert.equal((await client.waitClosed()).code, 1012);
    assert.equal((await exited).code, 0, app.output());
  } finally {
    await app.kill();
  }
});
