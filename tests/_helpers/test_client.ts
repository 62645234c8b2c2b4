/**
 * A real WebSocket client for e2e tests that queues every frame from the moment the socket
 * opens, so `next()` never misses one, and waits only on frames, closes and deadlines.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import type {
  EventFrame,
  ReadyFrame,
  ResumePosition,
  ServerFrame,
} from "../../src/protocol/mod.ts";
import { RaceObserved } from "./race_observed.ts";

/** Options of {@link TestClient.open}. */
export interface TestClientOptions {
  /** Subprotocols to offer (default `["agentsocket.v1"]`). */
  readonly protocols?: string[];
  /** Extra upgrade headers (Deno's client supports them; browsers do not). */
  readonly headers?: Record<string, string>;
}

/** The default deadline of a wait, in ms. */
export const DEFAULT_WAIT_MS = 10_000;

/** One client connection. */
export class TestClient {
  readonly socket: WebSocket;
  readonly frames: ServerFrame[] = [];
  /** Resolves when the socket opened (rejects if it closed first). */
  readonly opened: Promise<void>;
  /** Resolves with the close event. */
  readonly closed: Promise<CloseEvent>;
  #read = 0;
  #syncs = 0;
  #wake?: () => void;
  #closeEvent?: CloseEvent;

  private constructor(url: string, options: TestClientOptions) {
    const protocols = options.protocols ?? ["agentsocket.v1"];
    this.socket = options.headers
      // deno-lint-ignore no-explicit-any
      ? new (WebSocket as any)(url, { protocols, headers: options.headers })
      : new WebSocket(url, protocols);
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<CloseEvent>();
    this.opened = opened.promise;
    this.opened.catch(() => {});
    this.closed = closed.promise;
    this.socket.onopen = () => opened.resolve();
    this.socket.onmessage = (event) => {
      this.frames.push(JSON.parse(event.data));
      this.#wake?.();
    };
    this.socket.onerror = () => {};
    this.socket.onclose = (event) => {
      this.#closeEvent = event;
      opened.reject(new Error(`closed before open: ${event.code}`));
      closed.resolve(event);
      this.#wake?.();
    };
  }

  /** Opens a connection (does not wait for it to open). */
  static open(url: string, options: TestClientOptions = {}): TestClient {
    return new TestClient(url, options);
  }

  /** Sends a frame (an object is JSON-encoded). */
  send(frame: unknown): void {
    this.socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /**
   * Sends `hello` once open and resolves with `ready`.
   *
   * @throws {RaceObserved} When another frame comes first (`event_before_ready` or
   *   `frame_before_ready`).
   */
  async hello(token?: string, resume?: ResumePosition): Promise<ReadyFrame> {
    await this.opened;
    this.send({ type: "hello", ...(token ? { token } : {}), ...(resume ? { resume } : {}) });
    return await this.nextReady();
  }

  /**
   * Reads the next frame and requires it to be `ready` (the handshake's first frame).
   *
   * @throws {RaceObserved} When another frame comes first (`event_before_ready` or
   *   `frame_before_ready`).
   */
  async nextReady(timeoutMs = DEFAULT_WAIT_MS): Promise<ReadyFrame> {
    const first = await this.next(timeoutMs);
    if (first.type === "ready") return first;
    throw new RaceObserved(
      first.type === "event" ? "event_before_ready" : "frame_before_ready",
      "client",
      `the first frame was ${JSON.stringify(first)}`,
    );
  }

  /**
   * Sends a frame the server answers at once, without touching any service (a chat with no
   * text: `invalid_field`, its id as `ref`), and resolves with every frame read before that
   * answer. After `ready` frames are answered in order, so those are the answers to everything
   * sent earlier, and the events delivered meanwhile: what a test checks, without waiting for
   * a frame that may never come.
   */
  async sync(timeoutMs = DEFAULT_WAIT_MS): Promise<ServerFrame[]> {
    const id = `sync-${++this.#syncs}`;
    this.send({ type: "chat", id });
    const deadline = Date.now() + timeoutMs;
    const before: ServerFrame[] = [];
    for (;;) {
      const frame = await this.next(Math.max(1, deadline - Date.now()));
      if (frame.type === "error" && frame.ref === id) return before;
      before.push(frame);
    }
  }

  /** The next frame not read yet. */
  async next(timeoutMs = DEFAULT_WAIT_MS): Promise<ServerFrame> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length <= this.#read) {
      if (this.#closeEvent) {
        throw new AssertionError({
          message:
            `socket closed (${this.#closeEvent.code} ${this.#closeEvent.reason}) while waiting for a frame`,
        });
      }
      await this.#waitUntil(deadline, "a frame");
    }
    return this.frames[this.#read++];
  }

  /** Reads frames until one of `type`, skipping others. */
  async nextOf<T extends ServerFrame["type"]>(
    type: T,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<Extract<ServerFrame, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = await this.next(Math.max(1, deadline - Date.now()));
      if (frame.type === type) return frame as Extract<ServerFrame, { type: T }>;
    }
  }

  /** Reads events until `until` returns true for one; returns all events read. */
  async eventsUntil(
    until: (event: EventFrame) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<EventFrame[]> {
    const deadline = Date.now() + timeoutMs;
    const events: EventFrame[] = [];
    for (;;) {
      const event = await this.nextOf("event", Math.max(1, deadline - Date.now()));
      events.push(event);
      if (until(event)) return events;
    }
  }

  /** Waits for the close event. */
  async waitClosed(timeoutMs = DEFAULT_WAIT_MS): Promise<CloseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closeEvent) await this.#waitUntil(deadline, "the close");
    return this.#closeEvent;
  }

  /** Closes from the client side and waits for the close to finish. */
  async close(code = 1000): Promise<void> {
    if (!this.#closeEvent) {
      try {
        this.socket.close(code);
      } catch {
        // already closing
      }
      await this.waitClosed();
    }
  }

  async #waitUntil(deadline: number, what: string): Promise<void> {
    const left = deadline - Date.now();
    if (left <= 0) throw new AssertionError({ message: `timed out waiting for ${what}` });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }
}
