/**
 * A run as the client sees it: started by {@link AgentSocketClient.chat}, or by another
 * connection of the same user (another tab), and followed until it settles.
 *
 * @module
 */
import { TERMINAL_EVENT_NAMES } from "../protocol/mod.ts";
import type { AckFrame, EventFrame } from "../protocol/mod.ts";
import { ChatRefusedError, ClientClosedError, RunFailedError, RunLostError } from "./errors.ts";

/**
 * Where a run stands on the client.
 *
 * - `sending`: the chat is not acknowledged yet (it is resent after a reconnect).
 * - `running`: acknowledged, or seen running; events flow.
 * - `completed`, `failed`, `cancelled`: the run ended (from its terminal event, or from the
 *   server's history after a reset).
 * - `refused`: the server answered the chat with an error; no run exists.
 * - `lost`: the run's outcome cannot be known (the server lost it, or the client closed).
 */
export type ChatRunState =
  | "sending"
  | "running"
  | "completed"
  | "failed"
  | "cancelled"
  | "refused"
  | "lost";

/** How a run settled; `settled` resolves with it and never rejects. */
export interface ChatRunOutcome {
  readonly state: Exclude<ChatRunState, "sending" | "running">;
  /** The reply, when `completed`. */
  readonly reply?: string;
  /** Why it did not complete. */
  readonly error?: Error;
}

/** A run followed by the client. Its events arrive exactly once, in seq order. */
export interface ChatRun extends AsyncIterable<EventFrame> {
  /** The chat id (idempotency key); `undefined` for a run seen only from the middle. */
  readonly chatId: string | undefined;
  /** The user's message, when known. */
  readonly text: string | undefined;
  /** `true` when this client sent the chat. */
  readonly local: boolean;
  /** Set by the ack (or the run's first event). */
  readonly runId: string | undefined;
  /** The thread: the one asked for, then the one the ack names. */
  readonly threadId: string | undefined;
  readonly state: ChatRunState;
  /** The events delivered so far, in seq order. */
  readonly events: readonly EventFrame[];
  /** Resolves with the ack; rejects with {@link ChatRefusedError} or when the run is lost. */
  readonly accepted: Promise<AckFrame>;
  /**
   * Resolves with the reply (`agent_completed`'s `data.text`, or the stored reply after a
   * reset); rejects with {@link RunFailedError}, {@link ChatRefusedError},
   * {@link RunLostError} or {@link ClientClosedError}.
   */
  readonly reply: Promise<string>;
  /** Resolves once the run settles, whichever way; never rejects. */
  readonly settled: Promise<ChatRunOutcome>;
  /** Asks the server to cancel the run (sent once acknowledged and connected). */
  cancel(): void;
}

const MAX_EVENTS_PER_RUN = 10_000;

/**
 * The client's record of one run. Only the run registry calls its mutating methods.
 * @internal
 */
export class TrackedRun implements ChatRun {
  readonly local: boolean;
  chatId: string | undefined;
  text: string | undefined;
  runId: string | undefined;
  threadId: string | undefined;
  /** The thread named in the chat frame as first sent (resent unchanged). */
  readonly requestedThreadId: string | undefined;
  state: ChatRunState;
  readonly events: EventFrame[] = [];
  readonly accepted: Promise<AckFrame>;
  readonly reply: Promise<string>;
  readonly settled: Promise<ChatRunOutcome>;
  /** Set once `cancel()` was asked for; the client sends it when it can. */
  cancelRequested = false;
  /** Times the chat was refused with a retryable code. */
  retries = 0;
  #accepted = Promise.withResolvers<AckFrame>();
  #reply = Promise.withResolvers<string>();
  #settled = Promise.withResolvers<ChatRunOutcome>();
  #wake: (() => void)[] = [];
  #onCancel: (run: TrackedRun) => void;

  constructor(
    init: {
      local: boolean;
      chatId?: string;
      text?: string;
      runId?: string;
      threadId?: string;
    },
    onCancel: (run: TrackedRun) => void,
  ) {
    this.local = init.local;
    this.chatId = init.chatId;
    this.text = init.text;
    this.runId = init.runId;
    this.threadId = init.threadId;
    this.requestedThreadId = init.local ? init.threadId : undefined;
    this.state = init.runId === undefined ? "sending" : "running";
    this.#onCancel = onCancel;
    this.accepted = this.#accepted.promise;
    this.reply = this.#reply.promise;
    this.settled = this.#settled.promise;
    // Deno exits and browsers log on an unhandled rejection; awaiters still see it.
    this.accepted.catch(() => {});
    this.reply.catch(() => {});
  }

  /** Whether the run has settled. */
  get done(): boolean {
    return !(this.state === "sending" || this.state === "running");
  }

  cancel(): void {
    if (this.done || this.cancelRequested) return;
    this.cancelRequested = true;
    this.#onCancel(this);
  }

  /** The ack arrived (or a repeat of it). */
  acknowledge(ack: AckFrame): void {
    this.runId = ack.runId;
    this.threadId = ack.threadId;
    if (this.state === "sending") this.state = "running";
    this.#accepted.resolve(ack);
  }

  /** The run's id became known from its events (the ack may come later, or never). */
  bind(event: EventFrame): void {
    this.runId = event.runId;
    this.threadId = event.threadId;
    if (this.state === "sending") this.state = "running";
    this.#resolveAccepted(); // the server has the run, whether or not its ack arrives
  }

  /** Delivers one event; a terminal event settles the run. */
  push(event: EventFrame): void {
    if (this.runId === undefined) this.bind(event);
    if (event.name === "agent_started") {
      const data = event.data as { chatId?: unknown; text?: unknown };
      if (this.chatId === undefined && typeof data.chatId === "string") this.chatId = data.chatId;
      if (this.text === undefined && typeof data.text === "string") this.text = data.text;
    }
    if (this.events.length < MAX_EVENTS_PER_RUN) this.events.push(event);
    this.#notify();
    if (!TERMINAL_EVENT_NAMES.has(event.name)) return;
    if (event.name === "agent_completed") {
      this.complete(String(event.data.text ?? ""));
    } else if (event.name === "agent_cancelled") {
      this.fail("cancelled", "The run was cancelled");
    } else {
      const error = event.data.error as { code?: unknown; message?: unknown } | undefined;
      this.fail(
        "failed",
        typeof error?.message === "string" ? error.message : "The run failed",
        typeof error?.code === "string" ? error.code : undefined,
      );
    }
  }

  /** Settles with the reply. */
  complete(reply: string): void {
    if (this.done) return;
    this.state = "completed";
    this.#resolveAccepted();
    this.#reply.resolve(reply);
    this.#finish({ state: "completed", reply });
  }

  /** Settles as failed or cancelled. */
  fail(status: "failed" | "cancelled", message: string, code?: string): void {
    if (this.done) return;
    this.state = status;
    this.#resolveAccepted();
    const error = new RunFailedError(status, message, code);
    this.#reply.reject(error);
    this.#finish({ state: status, error });
  }

  /** Settles as refused (no run exists). */
  refuse(error: ChatRefusedError): void {
    if (this.done) return;
    this.state = "refused";
    this.#accepted.reject(error);
    this.#reply.reject(error);
    this.#finish({ state: "refused", error });
  }

  /** Settles as lost: the outcome cannot be known. */
  lose(error: RunLostError | ClientClosedError): void {
    if (this.done) return;
    this.state = "lost";
    this.#accepted.reject(error);
    this.#reply.reject(error);
    this.#finish({ state: "lost", error });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<EventFrame> {
    let index = 0;
    for (;;) {
      while (index < this.events.length) yield this.events[index++];
      if (this.done) {
        const outcome = await this.settled;
        if (outcome.state === "refused" || outcome.state === "lost") throw outcome.error;
        return;
      }
      await new Promise<void>((resolve) => this.#wake.push(resolve));
    }
  }

  #resolveAccepted(): void {
    if (this.runId === undefined || this.threadId === undefined) return;
    this.#accepted.resolve({
      type: "ack",
      id: this.chatId ?? "",
      threadId: this.threadId,
      runId: this.runId,
    });
  }

  #finish(outcome: ChatRunOutcome): void {
    this.#settled.resolve(outcome);
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const resolve of wake) resolve();
  }
}
