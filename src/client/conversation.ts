/**
 * One thread as a list of turns (the user's message, the agent's steps, the reply), built from
 * the REST history and the live events and merged by run: a run shows once, whichever source
 * told of it first, and a reset reloads the history into what is already shown.
 *
 * @module
 */
import { TERMINAL_EVENT_NAMES } from "../protocol/mod.ts";
import type { EventFrame } from "../protocol/mod.ts";
import type { AgentSocketClient } from "./agent_socket_client.ts";
import type { ChatRun, ChatRunOutcome, ChatRunState } from "./chat_run.ts";
import type { HistoryMessage } from "./history.ts";

/** One thing the agent did in a turn. */
export type TurnStep =
  | { readonly kind: "thinking"; readonly seq: number; readonly text: string }
  | {
    readonly kind: "tool";
    readonly seq: number;
    readonly toolCallId: string;
    readonly tool: string;
    readonly input: unknown;
    /** Present once `tool_completed` arrived. */
    readonly output?: unknown;
    /** `tool_completed`'s `data.error`, e.g. when the run was cancelled mid-call. */
    readonly error?: { readonly code?: string; readonly message?: string };
    readonly done: boolean;
  };

/**
 * A turn's status: a {@link ChatRunState}, or `unknown` for a run known only from the
 * history that has no reply and is not running (it failed or was cancelled).
 */
export type TurnStatus = ChatRunState | "unknown";

/** One exchange: the user's message and what the agent did with it. */
export interface Turn {
  /** The run id, or the chat id until the run is known. */
  readonly key: string;
  readonly runId?: string;
  readonly chatId?: string;
  readonly userText: string;
  readonly steps: readonly TurnStep[];
  readonly reply?: string;
  readonly status: TurnStatus;
  /** Why the turn did not complete. */
  readonly error?: string;
}

/** What a {@link Conversation} needs of the client (an {@link AgentSocketClient}). */
export type ConversationClient = Pick<AgentSocketClient, "on" | "chat" | "cancel" | "listMessages">;

/** Options of {@link Conversation}. */
export interface ConversationOptions {
  /** The thread to show; without it, the first message starts a new thread. */
  readonly threadId?: string;
}

interface MutableTurn {
  key: string;
  runId?: string;
  chatId?: string;
  userText: string;
  steps: TurnStep[];
  reply?: string;
  status: TurnStatus;
  error?: string;
}

const SETTLED: ReadonlySet<TurnStatus> = new Set([
  "completed",
  "failed",
  "cancelled",
  "refused",
  "lost",
]);

/**
 * A thread's turns, kept current from the client's events and the history.
 *
 * @example Show a thread
 * ```ts ignore
 * const conversation = new Conversation(client, { threadId });
 * conversation.onChange(() => render(conversation.turns));
 * await conversation.load();
 * conversation.send("what is 6*7");
 * ```
 */
export class Conversation {
  #client: ConversationClient;
  #threadId?: string;
  #turns: MutableTurn[] = [];
  #byKey = new Map<string, MutableTurn>();
  #listeners = new Set<() => void>();
  #offs: (() => void)[];
  #notice?: string;

  constructor(client: ConversationClient, options: ConversationOptions = {}) {
    this.#client = client;
    this.#threadId = options.threadId;
    this.#offs = [
      client.on("event", (event) => this.#onEvent(event)),
      client.on("run", (run) => {
        if (!run.local && run.threadId !== undefined && run.threadId === this.#threadId) {
          this.#follow(run);
        }
      }),
      // SPEC §3 Resume: resumed:false → reload the history.
      client.on("reset", () => void this.load().catch(() => {})),
    ];
  }

  /** The thread shown; set by the first message's ack when there was none. */
  get threadId(): string | undefined {
    return this.#threadId;
  }

  /** The turns, oldest first. */
  get turns(): readonly Turn[] {
    return this.#turns;
  }

  /** Whether a run of this thread is in flight (a thread runs one run at a time). */
  get busy(): boolean {
    return this.#turns.some((turn) => turn.status === "sending" || turn.status === "running");
  }

  /** A line for the reader when the server lost this thread's history (e.g. a restart). */
  get notice(): string | undefined {
    return this.#notice;
  }

  /**
   * Calls `listener` after every change.
   *
   * @returns A function that removes it.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Loads the newest page of the thread's history and merges it into the turns.
   *
   * @returns `false` when the server does not know the thread (the next message starts a
   *   new one); `true` otherwise, also when there is no thread yet.
   */
  async load(): Promise<boolean> {
    const threadId = this.#threadId;
    if (threadId === undefined) return true;
    const page = await this.#client.listMessages(threadId, { limit: 200 });
    if (threadId !== this.#threadId) return true;
    if (page === null) {
      this.#threadId = undefined;
      if (this.#turns.length > 0) {
        this.#notice = "The server no longer has this conversation (its history was reset). " +
          "What is shown here stays; your next message starts a new conversation.";
      }
      this.#changed();
      return false;
    }
    this.#mergeHistory(page.items);
    this.#changed();
    return true;
  }

  /**
   * Sends a message on this thread.
   *
   * @throws {Error} When a run is in flight on the thread.
   */
  send(text: string): ChatRun {
    if (this.busy) throw new Error("Cannot send: a run is in flight on this conversation");
    const run = this.#client.chat(text, { threadId: this.#threadId });
    const turn: MutableTurn = {
      key: run.chatId!,
      chatId: run.chatId,
      userText: text,
      steps: [],
      status: "sending",
    };
    this.#turns.push(turn);
    this.#byKey.set(turn.key, turn);
    this.#follow(run);
    void run.accepted.then((ack) => {
      this.#threadId ??= ack.threadId;
      this.#notice = undefined;
      this.#bind(turn, ack.runId);
      if (turn.status === "sending") turn.status = "running";
      this.#changed();
    }, () => {});
    this.#changed();
    return run;
  }

  /** Cancels the run in flight, if any. */
  cancel(): void {
    const turn = this.#turns.find((t) => t.status === "sending" || t.status === "running");
    if (turn?.runId !== undefined) this.#client.cancel(turn.runId);
  }

  /** Stops listening to the client. */
  dispose(): void {
    for (const off of this.#offs.splice(0)) off();
    this.#listeners.clear();
  }

  #follow(run: ChatRun): void {
    void run.settled.then((outcome) => this.#onSettled(run, outcome));
  }

  #onSettled(run: ChatRun, outcome: ChatRunOutcome): void {
    const turn = (run.runId !== undefined ? this.#byKey.get(run.runId) : undefined) ??
      (run.chatId !== undefined ? this.#byKey.get(run.chatId) : undefined);
    if (!turn || SETTLED.has(turn.status)) return;
    turn.status = outcome.state;
    if (outcome.reply !== undefined) turn.reply ??= outcome.reply;
    if (outcome.error) turn.error = outcome.error.message;
    this.#changed();
  }

  #onEvent(event: EventFrame): void {
    let turn = this.#byKey.get(event.runId);
    if (!turn && event.name === "agent_started" && typeof event.data.chatId === "string") {
      turn = this.#byKey.get(event.data.chatId);
      if (turn) this.#bind(turn, event.runId);
    }
    if (!turn) {
      if (this.#threadId === undefined || event.threadId !== this.#threadId) return;
      turn = { key: event.runId, runId: event.runId, userText: "", steps: [], status: "running" };
      this.#turns.push(turn);
      this.#byKey.set(turn.key, turn);
    }
    applyEvent(turn, event);
    this.#changed();
  }

  #bind(turn: MutableTurn, runId: string): void {
    if (turn.runId === runId) return;
    turn.runId = runId;
    turn.key = runId;
    this.#byKey.set(runId, turn);
  }

  #mergeHistory(messages: readonly HistoryMessage[]): void {
    const fromHistory: MutableTurn[] = [];
    const seen = new Set<MutableTurn>();
    for (const message of messages) {
      let turn = this.#byKey.get(message.runId);
      if (!turn) {
        turn = {
          key: message.runId,
          runId: message.runId,
          userText: "",
          steps: [],
          status: "unknown",
        };
        this.#byKey.set(turn.key, turn);
      }
      if (!seen.has(turn)) {
        seen.add(turn);
        fromHistory.push(turn);
      }
      if (message.role === "user") {
        if (turn.userText === "") turn.userText = message.text;
      } else {
        turn.reply ??= message.text;
        if (!SETTLED.has(turn.status)) turn.status = "completed";
      }
    }
    // Turns the page does not hold (older ones, or ones the server lost) keep their place:
    // those shown before the first turn of the page stay before it, the rest go after.
    const first = this.#turns.findIndex((turn) => seen.has(turn));
    const before = first < 0 ? [] : this.#turns.slice(0, first).filter((t) => !seen.has(t));
    const after = this.#turns.filter((t) => !seen.has(t) && !before.includes(t));
    this.#turns = [...before, ...fromHistory, ...after];
  }

  #changed(): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        reportError(error);
      }
    }
  }
}

/** Applies one run event to a turn (unknown names are ignored, SPEC §3). */
function applyEvent(turn: MutableTurn, event: EventFrame): void {
  const data = event.data;
  switch (event.name) {
    case "agent_started":
      if (typeof data.text === "string" && turn.userText === "") turn.userText = data.text;
      if (typeof data.chatId === "string") turn.chatId ??= data.chatId;
      if (turn.status === "sending" || turn.status === "unknown") turn.status = "running";
      return;
    case "agent_thinking":
      turn.steps.push({ kind: "thinking", seq: event.seq, text: String(data.text ?? "") });
      return;
    case "tool_executing":
      turn.steps.push({
        kind: "tool",
        seq: event.seq,
        toolCallId: String(data.toolCallId ?? ""),
        tool: String(data.tool ?? "tool"),
        input: data.input,
        done: false,
      });
      return;
    case "tool_completed": {
      const index = turn.steps.findIndex((step) =>
        step.kind === "tool" && step.toolCallId === data.toolCallId
      );
      const step = turn.steps[index];
      if (!step || step.kind !== "tool") return;
      turn.steps[index] = {
        ...step,
        output: data.output,
        error: data.error as { code?: string; message?: string } | undefined,
        done: true,
      };
      return;
    }
    case "agent_completed":
      turn.reply = String(data.text ?? "");
      turn.status = "completed";
      return;
    case "agent_failed": {
      const error = data.error as { code?: string; message?: string } | undefined;
      turn.status = "failed";
      turn.error = error?.message ?? "The run failed";
      return;
    }
    case "agent_cancelled":
      turn.status = "cancelled";
      turn.error = "Cancelled";
      return;
    default:
      if (TERMINAL_EVENT_NAMES.has(event.name)) turn.status = "failed";
  }
}
