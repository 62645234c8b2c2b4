/**
 * A local OpenAI-compatible chat-completions server for tests: a real HTTP server on 127.0.0.1
 * and a free port that answers `POST /v1/chat/completions` (`stream: true`) with scripted
 * server-sent events, and records every request so a test can assert what the model was sent.
 *
 * Each request takes the next scripted reply: a stream built with {@link stream} or an HTTP
 * error from {@link httpError}. A stream can hold at a {@link Gate} until the test releases it,
 * so a test can keep a run open without any timing assumption.
 *
 * @example Script a reply and read what was sent
 * ```ts
 * await using server = startFakeOpenAiServer();
 * server.reply(stream().text("Hel", "lo").usage({ promptTokens: 7, completionTokens: 2 }));
 * // ... point a client at server.baseUrl ...
 * const [request] = server.requests;
 * ```
 *
 * For load, {@link fastStream} answers with a long reply as fast as the connection takes it:
 * every chunk encoded once, when the reply is made, and written with no await between chunks
 * beyond the response body's backpressure (the benchmark's model server, `tests/bench/`).
 *
 * @module
 */

/** A point in a scripted stream where it waits until the test calls {@link Gate.release}. */
export class Gate {
  #reached = Promise.withResolvers<void>();
  #released = Promise.withResolvers<void>();

  /** Resolves when a stream arrives at this gate (everything before it has been written). */
  get reached(): Promise<void> {
    return this.#reached.promise;
  }

  /** Lets a stream waiting at this gate (or arriving later) go on. */
  release(): void {
    this.#released.resolve();
  }

  /** Called by the server: marks the gate reached and resolves when it is released. */
  arrive(): Promise<void> {
    this.#reached.resolve();
    return this.#released.promise;
  }
}

/** Token counts of the usage chunk. */
export interface ScriptedUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Sent as `prompt_tokens_details.cached_tokens` when given. */
  readonly cachedTokens?: number;
}

/** A tool call as the model streams it. */
export interface ScriptedToolCall {
  /** `tool_calls[].index`; Ollama sends 0 for every call. @default the call's position */
  readonly index?: number;
  readonly id: string;
  readonly name: string;
  /** One string: the whole call in one chunk. Several: the first chunk carries the id, the
   *  name and the first fragment, each further chunk one more fragment. */
  readonly arguments: string | readonly string[];
}

type StreamStep =
  | { readonly kind: "chunk"; readonly delta: Record<string, unknown> }
  | { readonly kind: "finish"; readonly reason: string }
  | { readonly kind: "comment"; readonly text: string }
  | { readonly kind: "raw"; readonly text: string }
  | { readonly kind: "gate"; readonly gate: Gate }
  | { readonly kind: "cut" }
  | { readonly kind: "stall" };

/** Options of {@link stream}. */
export interface StreamOptions {
  /** Line ending of every SSE line. @default "\n" */
  readonly lineEnding?: "\n" | "\r\n";
}

/**
 * A scripted streaming reply. Steps are written in order; unless it ends with {@link cut} or
 * {@link stall}, the server then adds a finish chunk (when none was scripted: `tool_calls`
 * after a tool call, else `stop`), the usage chunk when the request asked for it
 * (`stream_options.include_usage`), and `data: [DONE]`.
 */
export class StreamReply {
  readonly lineEnding: "\n" | "\r\n";
  #steps: StreamStep[] = [];
  #usage: ScriptedUsage | undefined;

  constructor(options: StreamOptions = {}) {
    this.lineEnding = options.lineEnding ?? "\n";
  }

  /** The scripted steps, in order. */
  get steps(): readonly StreamStep[] {
    return this.#steps;
  }

  /** The usage the usage chunk reports, when scripted. */
  get scriptedUsage(): ScriptedUsage | undefined {
    return this.#usage;
  }

  /** One chunk of `delta.content` per piece. */
  text(...pieces: string[]): this {
    for (const content of pieces) this.#steps.push({ kind: "chunk", delta: { content } });
    return this;
  }

  /** One chunk of `delta.reasoning_content` per piece. */
  reasoning(...pieces: string[]): this {
    for (const piece of pieces) {
      this.#steps.push({ kind: "chunk", delta: { reasoning_content: piece } });
    }
    return this;
  }

  /** A tool call, whole or in argument fragments (see {@link ScriptedToolCall}). */
  toolCall(call: ScriptedToolCall): this {
    const index = call.index ?? this.#steps.filter((s) => isToolCallStart(s)).length;
    const fragments = typeof call.arguments === "string" ? [call.arguments] : call.arguments;
    const [first = "", ...rest] = fragments;
    this.#steps.push({
      kind: "chunk",
      delta: {
        tool_calls: [{
          index,
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: first },
        }],
      },
    });
    for (const fragment of rest) {
      this.#steps.push({
        kind: "chunk",
        delta: { tool_calls: [{ index, function: { arguments: fragment } }] },
      });
    }
    return this;
  }

  /** A chunk with an empty delta and this `finish_reason`. */
  finish(reason: string): this {
    this.#steps.push({ kind: "finish", reason });
    return this;
  }

  /** The counts of the usage chunk. @default prompt 10, completion: the number of pieces */
  usage(usage: ScriptedUsage): this {
    this.#usage = usage;
    return this;
  }

  /** An SSE comment line (`: keep-alive`), which carries no event. */
  keepAlive(text = "keep-alive"): this {
    this.#steps.push({ kind: "comment", text });
    return this;
  }

  /** A line written as given, followed by a blank line (e.g. `data: {not json`). */
  raw(line: string): this {
    this.#steps.push({ kind: "raw", text: line });
    return this;
  }

  /** Holds the stream here until `gate` is released. */
  gate(gate: Gate): this {
    this.#steps.push({ kind: "gate", gate });
    return this;
  }

  /** Breaks the connection here: the body ends without its terminating chunk. Last step. */
  cut(): this {
    this.#steps.push({ kind: "cut" });
    return this;
  }

  /** Sends nothing more and holds the request open until the client goes away. Last step. */
  stall(): this {
    this.#steps.push({ kind: "stall" });
    return this;
  }
}

function isToolCallStart(step: StreamStep): boolean {
  if (step.kind !== "chunk") return false;
  const calls = step.delta.tool_calls as { id?: string }[] | undefined;
  return calls?.[0]?.id !== undefined;
}

/** Starts a scripted streaming reply. */
export function stream(options?: StreamOptions): StreamReply {
  return new StreamReply(options);
}

/** A scripted non-streaming HTTP answer (an error before the first chunk). */
export interface ErrorReply {
  readonly kind: "http_error";
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * An HTTP error answer, e.g. `httpError(429, { headers: { "retry-after": "3" } })`.
 *
 * @param status The HTTP status.
 * @param options.body Defaults to an OpenAI-style `{"error":{"message",...}}` body.
 */
export function httpError(
  status: number,
  options: { headers?: Record<string, string>; body?: string } = {},
): ErrorReply {
  const body = options.body ??
    JSON.stringify({
      error: { message: `fake server: scripted ${status}`, type: "fake_error", code: null },
    });
  return { kind: "http_error", status, headers: options.headers ?? {}, body };
}

/** Options of {@link fastStream}. */
export interface FastStreamOptions {
  /** The reply's text pieces after the first, one `delta.content` chunk each. */
  readonly pieces: readonly string[];
  /**
   * The first piece, made when the answer writes it (the moment it is enqueued to the response
   * body): a benchmark stamps its time there. Called once per answer.
   */
  readonly first: () => string;
  /** Chunks per write of the response body, the first piece's always alone. @default 1 */
  readonly chunksPerWrite?: number;
  /** The model name in every chunk. @default "fake-model" */
  readonly model?: string;
}

/**
 * A long streaming reply for load: like a {@link StreamReply} of text pieces (the role chunk,
 * one chunk per piece, the finish chunk `stop`, the usage chunk when asked for, `[DONE]`), but
 * encoded once and written as fast as the client reads. The first piece is made per answer
 * (see {@link FastStreamOptions.first}); everything after it is the same bytes for every answer.
 */
export class FastStreamReply {
  /** The pieces after the first. */
  readonly pieces: readonly string[];
  readonly first: () => string;
  readonly #model: string;
  readonly #writes: readonly Uint8Array[];
  readonly #usage: Uint8Array;
  readonly #done: Uint8Array;

  constructor(options: FastStreamOptions) {
    this.pieces = options.pieces;
    this.first = options.first;
    this.#model = options.model ?? "fake-model";
    const perWrite = Math.max(1, Math.floor(options.chunksPerWrite ?? 1));
    const chunks = [
      ...options.pieces.map((content) => this.#chunk({ content }, null)),
      this.#chunk({}, "stop"),
    ];
    const writes: Uint8Array[] = [];
    for (let i = 0; i < chunks.length; i += perWrite) {
      writes.push(encoder.encode(chunks.slice(i, i + perWrite).join("")));
    }
    this.#writes = writes;
    const pieces = options.pieces.length + 1;
    this.#usage = encoder.encode(sseData({
      id: FAST_STREAM_ID,
      object: "chat.completion.chunk",
      created: 0,
      model: this.#model,
      choices: [],
      usage: { prompt_tokens: 10, completion_tokens: pieces, total_tokens: 10 + pieces },
    }));
    this.#done = encoder.encode("data: [DONE]\n\n");
  }

  /** The role chunk and the first piece's chunk, as one write: made now. */
  head(): Uint8Array {
    return encoder.encode(
      this.#chunk({ role: "assistant", content: "" }, null) +
        this.#chunk({ content: this.first() }, null),
    );
  }

  /** Everything after the head, write by write (the usage chunk only when asked for). */
  tail(includeUsage: boolean): readonly Uint8Array[] {
    return includeUsage
      ? [...this.#writes, this.#usage, this.#done]
      : [...this.#writes, this.#done];
  }

  #chunk(delta: Record<string, unknown>, finishReason: string | null): string {
    return sseData({
      id: FAST_STREAM_ID,
      object: "chat.completion.chunk",
      created: 0,
      model: this.#model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    });
  }
}

const FAST_STREAM_ID = "chatcmpl-fast";

function sseData(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** Starts a {@link FastStreamReply}. */
export function fastStream(options: FastStreamOptions): FastStreamReply {
  return new FastStreamReply(options);
}

/** A scripted answer to one request. */
export type Reply = StreamReply | ErrorReply | FastStreamReply;

/** One request the server received. */
export interface RecordedRequest {
  readonly path: string;
  readonly headers: Headers;
  /** The parsed JSON body (model, messages, tools, stream_options, ...). */
  // deno-lint-ignore no-explicit-any
  readonly body: any;
  /** Resolves when the client went away before the reply was fully written. */
  readonly aborted: Promise<void>;
  /** Resolves when the answer ended, however: written whole, cut, or aborted by the client. */
  readonly ended: Promise<void>;
  /** Whether {@link aborted} has resolved. */
  readonly wasAborted: boolean;
}

interface OpenRequest {
  readonly gone: AbortController;
}

/** Options of {@link startFakeOpenAiServer}. */
export interface FakeOpenAiServerOptions {
  /** The port on 127.0.0.1. @default 0 (a free one) */
  readonly port?: number;
  /**
   * Answers to other paths than the chat completions', by path (a benchmark's `/health/ready`);
   * every other path is 404.
   */
  readonly routes?: Readonly<Record<string, (request: Request) => Response | Promise<Response>>>;
}

/** The running fake server. */
export class FakeOpenAiServer implements AsyncDisposable {
  /** The API root, `/v1` included, as `LLM_BASE_URL` takes it. */
  readonly baseUrl: string;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Requests that found no scripted reply (answered 500). */
  unscripted = 0;
  #queue: Reply[] = [];
  #matched: { match: (request: RecordedRequest) => boolean; reply: Reply }[] = [];
  #fallback: Reply | undefined;
  #open = new Set<OpenRequest>();
  #arrivals: { count: number; resolve: () => void }[] = [];
  #server: Deno.HttpServer<Deno.NetAddr>;
  #routes: NonNullable<FakeOpenAiServerOptions["routes"]>;

  constructor(options: FakeOpenAiServerOptions = {}) {
    this.#routes = options.routes ?? {};
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: options.port ?? 0,
      onListen() {},
      // A scripted cut errors the body stream on purpose; it is no failure of the server.
      onError: () => new Response("fake server error", { status: 500 }),
    }, (request) => this.#handle(request));
    this.baseUrl = `http://127.0.0.1:${this.#server.addr.port}/v1`;
  }

  /** Answers being written now (streams not yet ended). */
  get openAnswers(): number {
    return this.#open.size;
  }

  /** Queues replies: each request takes the next one. */
  reply(...replies: Reply[]): this {
    this.#queue.push(...replies);
    return this;
  }

  /** Answers the first request for which `match` holds with `reply` (once, before the queue). */
  replyWhen(match: (request: RecordedRequest) => boolean, reply: Reply): this {
    this.#matched.push({ match, reply });
    return this;
  }

  /** The reply for requests when nothing else is scripted (a stream's gates pass through). */
  fallback(reply: Reply): this {
    this.#fallback = reply;
    return this;
  }

  /** Resolves once at least `count` requests have arrived. */
  received(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#arrivals.push({ count, resolve });
    return promise;
  }

  /** Ends every open answer (as the client would see a cut) and stops the server. */
  async close(): Promise<void> {
    for (const open of this.#open) open.gone.abort("server closing");
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #handle(request: Request): Promise<Response> {
    const path = new URL(request.url).pathname;
    if (path !== "/v1/chat/completions") {
      const route = Object.hasOwn(this.#routes, path) ? this.#routes[path] : undefined;
      return route ? await route(request) : new Response("not found", { status: 404 });
    }
    if (request.method !== "POST") return new Response("method not allowed", { status: 405 });
    let body: unknown;
    try {
      body = await request.json();
    } catch {
      return Response.json({ error: { message: "body is not JSON" } }, { status: 400 });
    }
    const gone = new AbortController();
    const aborted = Promise.withResolvers<void>();
    const ended = Promise.withResolvers<void>();
    const state = { aborted: false };
    const recorded: RecordedRequest = {
      path,
      headers: request.headers,
      body,
      aborted: aborted.promise,
      ended: ended.promise,
      get wasAborted() {
        return state.aborted;
      },
    };
    this.requests.push(recorded);
    this.#arrivals = this.#arrivals.filter((a) => {
      if (this.requests.length < a.count) return true;
      a.resolve();
      return false;
    });

    const reply = this.#take(recorded);
    if (reply === undefined) {
      this.unscripted++;
      ended.resolve();
      return Response.json({ error: { message: "fake server: no scripted reply left" } }, {
        status: 500,
      });
    }
    if (reply instanceof StreamReply || reply instanceof FastStreamReply) {
      const open: OpenRequest = { gone };
      this.#open.add(open);
      const finished = () => {
        this.#open.delete(open);
        ended.resolve();
      };
      const onGone = () => {
        state.aborted = true;
        aborted.resolve();
        finished();
      };
      const hooks = { gone, onGone, onEnd: finished };
      return new Response(
        reply instanceof FastStreamReply
          ? fastBody(reply, body, hooks)
          : sseBody(reply, body, hooks),
        { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } },
      );
    }
    ended.resolve();
    return new Response(reply.body, {
      status: reply.status,
      headers: { "content-type": "application/json", ...reply.headers },
    });
  }

  #take(request: RecordedRequest): Reply | undefined {
    const matched = this.#matched.findIndex((m) => m.match(request));
    if (matched >= 0) return this.#matched.splice(matched, 1)[0].reply;
    return this.#queue.shift() ?? this.#fallback;
  }
}

/** Starts a {@link FakeOpenAiServer} on 127.0.0.1 and a free port (or `options.port`). */
export function startFakeOpenAiServer(options?: FakeOpenAiServerOptions): FakeOpenAiServer {
  return new FakeOpenAiServer(options);
}

const encoder = new TextEncoder();
const CLIENT_GONE = "client gone";

function sseBody(
  reply: StreamReply,
  // deno-lint-ignore no-explicit-any
  requestBody: any,
  hooks: { gone: AbortController; onGone: () => void; onEnd: () => void },
): ReadableStream<Uint8Array> {
  const eol = reply.lineEnding;
  const base = {
    id: `chatcmpl-${crypto.randomUUID().slice(0, 8)}`,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: typeof requestBody?.model === "string" ? requestBody.model : "fake-model",
  };
  const data = (value: unknown) => `data: ${JSON.stringify(value)}${eol}${eol}`;
  const choice = (delta: Record<string, unknown>, finishReason: string | null) =>
    data({ ...base, choices: [{ index: 0, delta, finish_reason: finishReason }] });

  // Resolves when the client is gone or the server closes: wakes a gate or a stall.
  const goneSignal = hooks.gone.signal;
  const whenGone = new Promise<void>((resolve) => {
    if (goneSignal.aborted) resolve();
    goneSignal.addEventListener("abort", () => resolve(), { once: true });
  });

  async function* lines(): AsyncGenerator<string | "cut"> {
    let pieces = 0;
    let finished = false;
    let toolCalls = false;
    yield choice({ role: "assistant", content: "" }, null);
    for (const step of reply.steps) {
      switch (step.kind) {
        case "chunk":
          if (step.delta.tool_calls) toolCalls = true;
          else pieces++;
          yield choice(step.delta, null);
          break;
        case "finish":
          finished = true;
          yield choice({}, step.reason);
          break;
        case "comment":
          yield `: ${step.text}${eol}${eol}`;
          break;
        case "raw":
          yield `${step.text}${eol}${eol}`;
          break;
        case "gate":
          await Promise.race([step.gate.arrive(), whenGone]);
          if (goneSignal.aborted) return;
          break;
        case "cut":
          yield "cut";
          return;
        case "stall":
          await whenGone;
          return;
      }
    }
    if (!finished) yield choice({}, toolCalls ? "tool_calls" : "stop");
    if (requestBody?.stream_options?.include_usage === true) {
      const usage = reply.scriptedUsage ?? { promptTokens: 10, completionTokens: pieces };
      yield data({
        ...base,
        choices: [],
        usage: {
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          total_tokens: usage.promptTokens + usage.completionTokens,
          ...(usage.cachedTokens === undefined
            ? {}
            : { prompt_tokens_details: { cached_tokens: usage.cachedTokens } }),
        },
      });
    }
    yield `data: [DONE]${eol}${eol}`;
  }

  const source = lines();
  let settled = false;
  const settle = (how: "end" | "gone") => {
    if (settled) return;
    settled = true;
    if (how === "gone") hooks.onGone();
    else hooks.onEnd();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await source.next();
      if (goneSignal.aborted) {
        // The client went away (the stream is cancelled already: erroring it is a no-op), or
        // the server is closing: the client sees a cut.
        controller.error(new Error("fake server: closing"));
        settle(goneSignal.reason === CLIENT_GONE ? "gone" : "end");
      } else if (next.done) {
        controller.close();
        settle("end");
      } else if (next.value === "cut") {
        controller.error(new Error("fake server: scripted cut"));
        settle("end");
      } else {
        controller.enqueue(encoder.encode(next.value));
      }
    },
    cancel() {
      hooks.gone.abort(CLIENT_GONE);
      settle("gone");
    },
  });
}

/** Bytes a fast stream's body queues at a time, when the client reads and the queue is empty. */
const FAST_BODY_BATCH_BYTES = 64 * 1024;

function fastBody(
  reply: FastStreamReply,
  // deno-lint-ignore no-explicit-any
  requestBody: any,
  hooks: { gone: AbortController; onGone: () => void; onEnd: () => void },
): ReadableStream<Uint8Array> {
  const writes = reply.tail(requestBody?.stream_options?.include_usage === true);
  let next = -1; // -1: the head
  let settled = false;
  const settle = (how: "end" | "gone") => {
    if (settled) return;
    settled = true;
    if (how === "gone") hooks.onGone();
    else hooks.onEnd();
  };
  let body: ReadableStreamDefaultController<Uint8Array> | undefined;
  // The server is closing: the client sees a cut, even while the stream waits for it to read.
  hooks.gone.signal.addEventListener("abort", () => {
    if (hooks.gone.signal.reason === CLIENT_GONE || settled) return;
    try {
      body?.error(new Error("fake server: closing"));
    } catch {
      // closed meanwhile
    }
    settle("end");
  }, { once: true });
  // A high-water mark of 0: `pull` runs only when the HTTP server reads and nothing is queued,
  // so the head is made when the server is about to write the body's first bytes (not when the
  // response is created), and no more than a batch waits in the queue.
  return new ReadableStream<Uint8Array>({
    start(controller) {
      body = controller;
    },
    // No await: a batch is enqueued at once; the server's next read past it calls again
    // (backpressure), which is the only wait.
    pull(controller) {
      if (settled) return;
      if (next === -1) {
        controller.enqueue(reply.head());
        next = 0;
        return;
      }
      let queued = 0;
      while (next < writes.length && queued < FAST_BODY_BATCH_BYTES) {
        queued += writes[next].byteLength;
        controller.enqueue(writes[next++]);
      }
      if (next === writes.length) {
        controller.close();
        settle("end");
      }
    },
    cancel() {
      hooks.gone.abort(CLIENT_GONE);
      settle("gone");
    },
  }, { highWaterMark: 0 });
}
