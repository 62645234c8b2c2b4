/**
 * Stand-ins for the client's seams: sockets the test drives (through `socketFactory`), timers
 * that fire only when the test says, a `fetch` that answers from a table. Nothing here touches
 * the network or sleeps: waits are on promises bounded by an `AbortSignal`.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import type {
  ClientSocket,
  ClientTimers,
  SocketFactory,
  SocketHandlers,
  TimerHandle,
} from "../../../src/client/mod.ts";
import type { EventData, EventFrame, EventName, ReadyFrame } from "../../../src/protocol/mod.ts";

/** A frame as the client sent it, parsed. */
export type SentFrame = { readonly type: string; readonly [key: string]: unknown };

/** Resolves once `ready()` holds; checked after every `poke()`. */
class Waiters {
  #waiters = new Set<() => void>();

  async until(ready: () => boolean, signal: AbortSignal, what: string): Promise<void> {
    while (!ready()) {
      if (signal.aborted) throw new AssertionError({ message: `timed out waiting for ${what}` });
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.#waiters.add(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }

  poke(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** One socket of the client, driven by the test as the server would. */
export class FakeSocket implements ClientSocket {
  readonly url: URL;
  readonly protocols: readonly string[];
  /** Every frame the client sent, parsed, in order. */
  readonly sent: SentFrame[] = [];
  /** The close the client started, if any. */
  closedByClient?: { code: number; reason: string };
  isOpen = false;
  #handlers: SocketHandlers;
  #read = 0;
  #waiters = new Waiters();
  #closed = false;

  constructor(url: URL, protocols: readonly string[], handlers: SocketHandlers) {
    this.url = url;
    this.protocols = protocols;
    this.#handlers = handlers;
  }

  send(data: string): void {
    if (!this.isOpen) throw new DOMException("'readyState' not OPEN", "InvalidStateError");
    this.sent.push(JSON.parse(data));
    this.#waiters.poke();
  }

  close(code: number, reason: string): void {
    this.closedByClient ??= { code, reason };
    this.isOpen = false;
    // As a browser does: the close event comes later, with the code the client chose.
    queueMicrotask(() => this.#finish(code, reason));
  }

  /** The connection opens: the client sends `hello`. */
  open(): void {
    this.isOpen = true;
    this.#handlers.open();
  }

  /** The server sends a frame. */
  receive(frame: object): void {
    this.#handlers.message(JSON.stringify(frame));
  }

  /** The server (or the network) closes the connection with `code` (1006: cut). */
  drop(code = 1006, reason = ""): void {
    this.isOpen = false;
    this.#finish(code, reason);
  }

  /** Resolves with the next frame sent and not read yet (of `type`, skipping others). */
  async next(type?: string, signal = AbortSignal.timeout(2000)): Promise<SentFrame> {
    for (;;) {
      await this.#waiters.until(() => this.sent.length > this.#read, signal, `a "${type}" frame`);
      const frame = this.sent[this.#read++];
      if (type === undefined || frame.type === type) return frame;
    }
  }

  /** Frames sent and not read yet, marked read. */
  unread(): SentFrame[] {
    const frames = this.sent.slice(this.#read);
    this.#read = this.sent.length;
    return frames;
  }

  /** Opens, checks `hello`, sends `ready`: the usual handshake. */
  async handshake(ready: Partial<ReadyFrame> = {}): Promise<SentFrame> {
    this.open();
    const hello = await this.next("hello");
    this.receive(readyFrame(ready));
    return hello;
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handlers.close(code, reason);
  }
}

/** A {@link SocketFactory} that hands out {@link FakeSocket}s. */
export class FakeSockets {
  readonly sockets: FakeSocket[] = [];
  #taken = 0;
  #waiters = new Waiters();

  readonly factory: SocketFactory = (url, protocols, handlers) => {
    const socket = new FakeSocket(url, protocols, handlers);
    this.sockets.push(socket);
    this.#waiters.poke();
    return socket;
  };

  /** Resolves with the next socket the client opens. */
  async next(signal = AbortSignal.timeout(2000)): Promise<FakeSocket> {
    await this.#waiters.until(() => this.sockets.length > this.#taken, signal, "a socket");
    return this.sockets[this.#taken++];
  }

  /** How many sockets the client opened. */
  get count(): number {
    return this.sockets.length;
  }
}

/** Timers that fire only on `advance()`; `random()` is fixed. */
export class ManualTimers implements ClientTimers {
  #now = Date.UTC(2026, 0, 1);
  #next = 1;
  #pending = new Map<number, { at: number; ms: number; callback: () => void }>();
  random = () => 0.5;

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#pending.set(id, { at: this.#now + ms, ms, callback });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#pending.delete(handle as number);
  }

  now(): number {
    return this.#now;
  }

  /** The delays of the timers pending, in the order they were set. */
  get pendingDelays(): number[] {
    return [...this.#pending.values()].map((t) => t.ms);
  }

  /** Moves time on by `ms`, firing what falls due, in order. */
  advance(ms: number): void {
    this.#now += ms;
    for (;;) {
      const due = [...this.#pending].filter(([, t]) => t.at <= this.#now)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) return;
      this.#pending.delete(due[0]);
      due[1].callback();
    }
  }
}

/** A `ready` frame. */
export function readyFrame(overrides: Partial<ReadyFrame> = {}): ReadyFrame {
  return {
    type: "ready",
    connectionId: "conn",
    userId: "alice",
    epoch: "e1",
    seq: 0,
    resumed: false,
    activeRuns: [],
    ...overrides,
  };
}

/** A run event frame, typed by the catalogue. */
export function eventFrame<N extends EventName>(
  seq: number,
  name: N,
  data: EventData[N],
  ids: { runId?: string; threadId?: string } = {},
): EventFrame {
  return {
    type: "event",
    seq,
    threadId: ids.threadId ?? "t1",
    runId: ids.runId ?? "r1",
    name,
    data: data as unknown as Record<string, unknown>,
    ts: "2026-01-01T00:00:00.000Z",
  };
}

/** A compact JWT with `exp` (unsigned: the client never verifies). */
export function jwtWithExp(exp: number): string {
  const part = (value: object) =>
    btoa(JSON.stringify(value)).replaceAll("=", "").replaceAll("+", "-").replaceAll("/", "_");
  return `${part({ alg: "HS256" })}.${part({ sub: "alice", exp })}.sig`;
}

/** Lets queued promise callbacks run (the client settles some things a microtask later). */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** One request a {@link FakeFetch} received. */
export interface FetchCall {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | null;
  readonly body: unknown;
}

/** A `fetch` that answers from a handler and records each request. */
export class FakeFetch {
  readonly calls: FetchCall[] = [];
  #handler: (call: FetchCall) => Response | Promise<Response>;

  constructor(handler: (call: FetchCall) => Response | Promise<Response>) {
    this.#handler = handler;
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    const call = {
      method: init?.method ?? "GET",
      path: url.pathname + url.search,
      authorization: headers.get("authorization"),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    };
    this.calls.push(call);
    return await this.#handler(call);
  };
}

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}
