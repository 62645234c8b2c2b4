/**
 * The model agent's idle timeout (docs/protocol.md#agents-and-tools): a request fails when no
 * byte comes from the model for the timeout while we wait for one. Bytes are counted where
 * they arrive, under the SDK's parser (through the `fetch` it is given), so keep-alive lines
 * count; time while nobody reads (a tool runs, the consumer is busy) does not.
 *
 * @module
 */
import type { Clock, Timer } from "../../_util/clock.ts";

/** Why an idle request was aborted. */
export class IdleTimeoutError extends Error {
  /** The timeout that passed without a byte. */
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super(`No byte from the model for ${timeoutMs} ms`);
    this.name = "IdleTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** Aborts {@link signal} when a wait for bytes lasts `timeoutMs`. One per model request. */
export class IdleWatch {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #controller = new AbortController();
  #timer: Timer | undefined;

  constructor(timeoutMs: number, clock: Clock) {
    this.#timeoutMs = timeoutMs;
    this.#clock = clock;
  }

  /** Aborted with an {@link IdleTimeoutError} when the timeout passed. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the timeout passed. */
  get fired(): boolean {
    return this.#controller.signal.aborted;
  }

  /** A wait for bytes begins (the request was sent, or a read is pending). */
  waiting(): void {
    if (this.#timer !== undefined || this.fired) return;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      this.#controller.abort(new IdleTimeoutError(this.#timeoutMs));
    }, this.#timeoutMs);
  }

  /** The wait ended: bytes arrived, the body ended or the read failed. */
  received(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /**
   * Wraps `fetch` so that the wait for the response and every read of its body is watched.
   *
   * @param base The fetch to wrap.
   * @returns A fetch for the provider.
   */
  wrap(base: typeof fetch): typeof fetch {
    return async (input, init) => {
      this.waiting();
      let response: Response;
      try {
        response = await base(input, init);
      } finally {
        this.received();
      }
      if (response.body === null) return response;
      const reader = response.body.getReader();
      // highWaterMark 0: pull runs only while a reader waits, so only that time is watched.
      const body = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          this.waiting();
          try {
            const { value, done } = await reader.read();
            if (done) controller.close();
            else controller.enqueue(value);
          } catch (error) {
            controller.error(error);
          } finally {
            this.received();
          }
        },
        cancel: (reason) => {
          this.received();
          return reader.cancel(reason);
        },
      }, { highWaterMark: 0 });
      return new Response(body, {
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
      });
    };
  }
}
