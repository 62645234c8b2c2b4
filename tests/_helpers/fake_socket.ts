/**
 * A controllable stand-in for a server-side WebSocket, for unit tests of the connection actor.
 * It behaves as Deno's does where it matters: `send` before open throws; a `close` before open
 * is lost (the client never sees its code), which the socket records.
 *
 * @module
 */
import { AssertionError } from "node:assert/strict";
import type { SocketPort } from "../../src/connection/mod.ts";
import type { ServerFrame } from "../../src/protocol/mod.ts";

/** A fake socket that queues every frame sent, from the start. */
export class FakeSocket implements SocketPort {
  readyState: number = 0;
  bufferedAmount = 0;
  /** Every frame sent, parsed, in order. */
  readonly sent: ServerFrame[] = [];
  /** The close the server started, if any. */
  closed?: { code: number; reason: string };
  /** True when `close` was called before the socket opened (its code would be lost). */
  closedBeforeOpen = false;
  #read = 0;
  #waiters: (() => void)[] = [];

  /** The socket opens (call the actor's `opened()` after this). */
  open(): void {
    this.readyState = 1;
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new DOMException("'readyState' not OPEN", "InvalidStateError");
    this.sent.push(JSON.parse(data));
    this.#wake();
  }

  close(code: number, reason: string): void {
    if (this.readyState === 0) this.closedBeforeOpen = true;
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.closed = { code, reason };
    this.#wake();
  }

  /** The peer completes the close (or closes first): readyState becomes CLOSED. */
  finishClose(): void {
    this.readyState = 3;
  }

  /** Resolves with the next frame not read yet. */
  async nextSent(signal: AbortSignal = AbortSignal.timeout(1000)): Promise<ServerFrame> {
    await this.#until(() => this.sent.length > this.#read, signal, "no frame was sent");
    return this.sent[this.#read++];
  }

  /** Frames sent and not read yet. */
  unread(): ServerFrame[] {
    const frames = this.sent.slice(this.#read);
    this.#read = this.sent.length;
    return frames;
  }

  /** Resolves with the server's close once it starts. */
  async whenClosed(
    signal: AbortSignal = AbortSignal.timeout(2000),
  ): Promise<{ code: number; reason: string }> {
    await this.#until(() => this.closed !== undefined, signal, "the socket was not closed");
    return this.closed!;
  }

  async #until(condition: () => boolean, signal: AbortSignal, what: string): Promise<void> {
    while (!condition()) {
      if (signal.aborted) throw new AssertionError({ message: `Timed out: ${what}` });
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
        this.#waiters.push(() => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        });
      });
    }
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
