/**
 * A client that keeps one user's stream across reconnects, the way a real one does, and checks
 * what it receives as it goes: it reconnects (to whichever instance `pickUrl` names) with
 * `resume: {epoch, after}` from the last event it saw, and records every way the stream broke
 * the promise of docs/protocol.md#resume:
 *
 * - after `ready`, live events continue at `ready.seq + 1` (or, resumed, at `after + 1`) with
 *   no gap and no duplicate, in one epoch;
 * - `resumed: true` only in the epoch it asked for;
 * - `resumed: false` starts over: a new segment from `ready.seq` (its catch-up holds the
 *   active runs' events, in order).
 *
 * No thread is deleted where it is used, so a hole in the seqs is always a gap.
 *
 * @module
 */
import type {
  AckFrame,
  ErrorFrame,
  EventFrame,
  ReadyFrame,
  ServerFrame,
} from "../../src/protocol/mod.ts";

/** Options of {@link ResumingClient}. */
export interface ResumingClientOptions {
  /** The WebSocket URL to connect to next (say, a random instance). */
  readonly pickUrl: () => string;
  /** A token for `hello`. */
  readonly token: () => Promise<string>;
  /** Reconnect by itself when the server closes the socket. @default true */
  readonly reconnect?: boolean;
}

/** One connection's handshake, as the client saw it. */
export interface Segment {
  readonly ready: ReadyFrame;
  /** What it asked for. */
  readonly resume?: { readonly epoch: string; readonly after: number };
}

/** A chat's answer: its ack, or the error that refused it. */
export type ChatAnswer = AckFrame | ErrorFrame;

const RETRY_MS = [20, 50, 100, 200, 400];

/** One user's client, reconnecting and checking. */
export class ResumingClient {
  /** Every broken promise seen, in words. */
  readonly violations: string[] = [];
  /** Every `ready`, in order. */
  readonly segments: Segment[] = [];
  /** Every event received, in arrival order, with the epoch it was received in. */
  readonly events: { readonly epoch: string; readonly event: EventFrame }[] = [];
  /** Close codes of the connections the server ended. */
  readonly closes: number[] = [];
  #o: ResumingClientOptions;
  #socket?: WebSocket;
  #epoch?: string;
  /** The last seq seen in `#epoch`. */
  #lastSeq = 0;
  /** The next live seq expected; catch-up events of a fresh segment come below it. */
  #expected = 0;
  #readySeq = 0;
  /** True from a fresh segment's `ready` until its first live event. */
  #inCatchUp = false;
  #catchUpSeq = 0;
  #stopped = false;
  #connecting?: Promise<void>;
  #answers = new Map<string, PromiseWithResolvers<ChatAnswer>>();
  #waiters = new Set<() => void>();

  constructor(options: ResumingClientOptions) {
    this.#o = options;
  }

  /** True while a socket is open and past `ready`. */
  get ready(): boolean {
    return this.#socket?.readyState === WebSocket.OPEN && this.#expected > 0;
  }

  /** The resume position: epoch and last seq seen. */
  get position(): { readonly epoch?: string; readonly seq: number } {
    return { epoch: this.#epoch, seq: this.#lastSeq };
  }

  /**
   * Connects (again) and resolves once `ready` arrived; retries refused or failed handshakes
   * until `deadline` (ms since the epoch).
   */
  connect(deadline: number): Promise<void> {
    this.#connecting ??= this.#connect(deadline).finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  /**
   * Sends a chat and resolves with its ack or error. Rejects when the connection closes first
   * (the chat may or may not have been stored: resend the same id to find out).
   */
  chat(id: string, text: string, threadId?: string): Promise<ChatAnswer> {
    const socket = this.#socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const answer = Promise.withResolvers<ChatAnswer>();
    this.#answers.set(id, answer);
    socket.send(JSON.stringify({ type: "chat", id, text, ...(threadId ? { threadId } : {}) }));
    return answer.promise;
  }

  /** Closes the current socket from the client side (a reconnect follows when asked). */
  drop(): void {
    try {
      this.#socket?.close(1000);
    } catch {
      // already closing
    }
  }

  /** Stops reconnecting and closes; resolves when the socket is closed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const socket = this.#socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) =>
      socket.addEventListener("close", () => resolve())
    );
    try {
      socket.close(1000);
    } catch {
      // already closing
    }
    await closed;
  }

  /** Resolves once `predicate()` holds (checked on every frame); rejects at `deadline`. */
  async until(predicate: () => boolean, what: string, deadline: number): Promise<void> {
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 1_000));
        this.#waiters.add(wake);
      });
    }
  }

  async #connect(deadline: number): Promise<void> {
    for (let attempt = 0;; attempt++) {
      if (this.#stopped) throw new Error("stopped");
      const outcome = await this.#open();
      if (outcome === "ready") return;
      if (Date.now() > deadline) throw new Error(`No ready before the deadline (${outcome})`);
      // A refused handshake (1013 while a dependency is down, 1012 while draining): back off.
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt, 4)]));
    }
  }

  /** One connection attempt: "ready", or why not. */
  async #open(): Promise<string> {
    const token = await this.#o.token();
    const socket = new WebSocket(this.#o.pickUrl(), ["agentsocket.v1"]);
    this.#socket = socket;
    this.#expected = 0;
    const outcome = Promise.withResolvers<string>();
    const resume = this.#epoch === undefined
      ? undefined
      : { epoch: this.#epoch, after: this.#lastSeq };
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", token, resume }));
    socket.onerror = () => {};
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data) as ServerFrame;
      if (frame.type === "ready") {
        this.#onReady(frame, resume);
        outcome.resolve("ready");
      } else this.#onFrame(frame);
      for (const wake of [...this.#waiters]) wake();
    };
    socket.onclose = (event) => {
      outcome.resolve(`closed ${event.code} ${event.reason}`);
      if (this.#socket !== socket) return;
      const wasReady = this.#expected > 0;
      this.#expected = 0;
      for (const [id, answer] of this.#answers) {
        answer.reject(new Error(`closed ${event.code} before the answer to ${id}`));
      }
      this.#answers.clear();
      for (const wake of [...this.#waiters]) wake();
      if (!wasReady || this.#stopped) return;
      this.closes.push(event.code);
      if (this.#o.reconnect ?? true) {
        this.connect(Date.now() + 60_000).catch((error) => {
          if (!this.#stopped) this.violations.push(`could not reconnect: ${error.message}`);
        });
      }
    };
    return await outcome.promise;
  }

  #onReady(ready: ReadyFrame, resume?: { epoch: string; after: number }): void {
    this.segments.push({ ready, resume });
    if (ready.resumed) {
      if (!resume || ready.epoch !== resume.epoch || ready.seq < resume.after) {
        this.violations.push(
          `resumed:true in epoch ${ready.epoch} at ${ready.seq} for ${JSON.stringify(resume)}`,
        );
      }
      this.#expected = (resume?.after ?? 0) + 1;
    } else {
      this.#epoch = ready.epoch;
      this.#lastSeq = ready.seq;
      this.#expected = ready.seq + 1;
    }
    this.#readySeq = ready.seq;
    this.#inCatchUp = !ready.resumed;
    this.#catchUpSeq = 0;
  }

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "event":
        return this.#onEvent(frame);
      case "ack":
      case "error": {
        const id = frame.type === "ack" ? frame.id : frame.ref;
        const answer = id === undefined ? undefined : this.#answers.get(id);
        if (answer) {
          this.#answers.delete(id!);
          answer.resolve(frame);
        }
        return;
      }
      default:
        return;
    }
  }

  #onEvent(event: EventFrame): void {
    const epoch = this.#epoch!;
    this.events.push({ epoch, event });
    if (this.#inCatchUp && event.seq <= this.#readySeq) {
      // The catch-up of a fresh segment: the active runs' events, in order, before live ones.
      if (event.seq <= this.#catchUpSeq) {
        this.violations.push(`catch-up out of order: ${event.seq} after ${this.#catchUpSeq}`);
      }
      this.#catchUpSeq = event.seq;
      return;
    }
    this.#inCatchUp = false;
    if (event.seq !== this.#expected) {
      this.violations.push(
        `${
          event.seq < this.#expected ? "duplicate" : "gap"
        }: seq ${event.seq} where ${this.#expected} was due (epoch ${epoch})`,
      );
    }
    this.#expected = event.seq + 1;
    this.#lastSeq = Math.max(this.#lastSeq, event.seq);
  }
}
