/**
 * One thread as a list of turns (the user's message, the agent's steps, the reply as it grows),
 * built from the REST history and the runs the client follows, merged by run: a run shows
 * once, whichever source told of it first, a run that ended in the history shows its stored
 * (partial) reply and status, and a reset reloads the history into what is already shown.
 *
 * @module
 */
import type { HistoryMessage, RunStatus } from "../protocol/mod.ts";
import type { AgentSocketClient } from "./agent_socket_client.ts";
import type { ChatRun, ChatRunState, PendingApproval } from "./chat_run.ts";
import { ChatRefusedError, RunFailedError, RunLostError } from "./errors.ts";
import type { RunStep } from "./run_progress.ts";

/** One thing the agent did in a turn (a reasoning block, or a tool call). */
export type TurnStep = RunStep;

/** A turn's status: its run's (from the run followed, or the history's `runStatus`). */
export type TurnStatus = ChatRunState;

/** One exchange: the user's message and what the agent did with it. */
export interface Turn {
  /** The run id, or the chat id until the run is known. */
  readonly key: string;
  readonly runId?: string;
  readonly chatId?: string;
  readonly userText: string;
  /** Reasoning blocks and tool calls, in the order they began. */
  readonly steps: readonly TurnStep[];
  /** The reply so far (partial for a run that failed or was cancelled); none before any. */
  readonly reply?: string;
  /** The reasoning so far. */
  readonly reasoning: string;
  readonly status: TurnStatus;
  /** Why the turn did not complete, for people. */
  readonly error?: string;
  /**
   * Why, as a code: a run's failure (`context_too_long`, `provider_unavailable`, …), a refusal
   * (`too_many_runs`, `rate_limited`, `frame_too_large`, …), or `lost`.
   */
  readonly errorCode?: string;
  /** The seq of the run's `agent_started`, when known. */
  readonly seq?: number;
  /** The tool calls waiting for a decision (answer through `run.approve`). */
  readonly pendingApprovals: readonly PendingApproval[];
  /** The run, while the client follows it (to cancel, approve, or iterate its pieces). */
  readonly run?: ChatRun;
}

/** What a {@link Conversation} needs of the client (an {@link AgentSocketClient}). */
export type ConversationClient = Pick<
  AgentSocketClient,
  "on" | "chat" | "cancel" | "listMessages" | "runs"
>;

/** Options of {@link Conversation}. */
export interface ConversationOptions {
  /** The thread to show; without it, the first message starts a new thread. */
  readonly threadId?: string;
}

/** What the history holds of one run. */
interface StoredRun {
  runId: string;
  userText?: string;
  reply?: string;
  status: RunStatus;
  error?: { readonly code: string; readonly message: string };
  seq?: number;
}

/** One turn as the conversation keeps it: a followed run, the history's record, or both. */
interface TurnRecord {
  run?: ChatRun;
  stored?: StoredRun;
  /** The order in which turns became known (ties among turns without a seq). */
  readonly order: number;
}

const HISTORY_PAGE = 200;

/**
 * A thread's turns, kept current from the client's runs and the history.
 *
 * @example Show a thread
 * ```ts ignore
 * const conversation = await client.openThread(threadId);
 * conversation.onChange(() => render(conversation.turns));
 * conversation.send("what is 6*7");
 * ```
 */
export class Conversation {
  #client: ConversationClient;
  #threadId?: string;
  #turns: TurnRecord[] = [];
  #listeners = new Set<() => void>();
  #offs: (() => void)[] = [];
  #runOffs = new Map<ChatRun, () => void>();
  #notice?: string;
  #older?: string;
  #order = 0;
  #snapshot?: readonly Turn[];

  constructor(client: ConversationClient, options: ConversationOptions = {}) {
    this.#client = client;
    this.#threadId = options.threadId;
    this.#offs = [
      client.on("run", (run) => {
        if (this.#threadId !== undefined && run.threadId === this.#threadId) this.#adopt(run);
      }),
      // docs/protocol.md#resume: resumed:false → reload the history.
      client.on("reset", () => void this.load().catch(() => {})),
    ];
    this.#adoptFollowed();
  }

  /** The thread shown; set by the first message's ack when there was none. */
  get threadId(): string | undefined {
    return this.#threadId;
  }

  /** The turns, oldest first. */
  get turns(): readonly Turn[] {
    return this.#snapshot ??= this.#turns.map(turnOf);
  }

  /** Whether a run of this thread is in flight (a thread runs one run at a time). */
  get busy(): boolean {
    return this.turns.some((turn) => turn.status === "sending" || turn.status === "running");
  }

  /** Whether older history exists ({@link Conversation.loadOlder} reads it). */
  get hasOlder(): boolean {
    return this.#older !== undefined;
  }

  /** The tool calls of this thread waiting for a decision. */
  get pendingApprovals(): readonly PendingApproval[] {
    return this.turns.flatMap((turn) => turn.pendingApprovals);
  }

  /** A line for the reader when the server lost this thread's history (e.g. a restart). */
  get notice(): string | undefined {
    return this.#notice;
  }

  /**
   * Calls `listener` after every change (a piece of a reply included).
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
    const page = await this.#client.listMessages(threadId, { limit: HISTORY_PAGE });
    if (threadId !== this.#threadId) return true;
    if (page === null) {
      this.#threadId = undefined;
      this.#older = undefined;
      if (this.#turns.length > 0) {
        this.#notice = "The server no longer has this conversation (its history was reset). " +
          "What is shown here stays; your next message starts a new conversation.";
      }
      this.#changed();
      return false;
    }
    this.#older = page.nextCursor;
    this.#merge(page.items, "newest");
    this.#adoptFollowed();
    this.#changed();
    return true;
  }

  /**
   * Loads the page of history just older than what is shown, and puts it first.
   *
   * @returns `false` when there was nothing older.
   */
  async loadOlder(): Promise<boolean> {
    const threadId = this.#threadId;
    const before = this.#older;
    if (threadId === undefined || before === undefined) return false;
    const page = await this.#client.listMessages(threadId, { limit: HISTORY_PAGE, before });
    if (threadId !== this.#threadId || page === null) return false;
    this.#older = page.nextCursor;
    this.#merge(page.items, "older");
    this.#changed();
    return true;
  }

  /**
   * Sends a message on this thread.
   *
   * @throws {Error} When a run is in flight on the thread.
   * @throws {FrameTooLargeError} When the message would not fit in a frame.
   */
  send(text: string): ChatRun {
    if (this.busy) throw new Error("Cannot send: a run is in flight on this conversation");
    const run = this.#client.chat(text, { threadId: this.#threadId });
    this.#adopt(run);
    void run.accepted.then((ack) => {
      this.#threadId ??= ack.threadId;
      this.#notice = undefined;
      this.#changed();
    }, () => {});
    return run;
  }

  /** Cancels the run in flight, if any. */
  cancel(): void {
    const turn = this.turns.find((t) => t.status === "sending" || t.status === "running");
    if (turn?.run) turn.run.cancel();
    else if (turn?.runId !== undefined) this.#client.cancel(turn.runId);
  }

  /** Stops listening to the client and its runs. */
  dispose(): void {
    for (const off of this.#offs.splice(0)) off();
    for (const off of this.#runOffs.values()) off();
    this.#runOffs.clear();
    this.#listeners.clear();
  }

  /** Takes the runs the client follows on this thread (a reply in flight stays live). */
  #adoptFollowed(): void {
    if (this.#threadId === undefined) return;
    for (const run of this.#client.runs) if (run.threadId === this.#threadId) this.#adopt(run);
  }

  #adopt(run: ChatRun): void {
    if (this.#runOffs.has(run)) return;
    const record = (run.runId !== undefined ? this.#find(run.runId) : undefined) ??
      { order: this.#order++ };
    if (!this.#turns.includes(record)) this.#turns.push(record);
    record.run = run;
    this.#runOffs.set(run, run.onChange(() => this.#changed()));
    this.#changed();
  }

  #find(runId: string): TurnRecord | undefined {
    return this.#turns.find((t) => t.run?.runId === runId || t.stored?.runId === runId);
  }

  /**
   * Merges a page of history. Turns the page does not hold keep their place: those shown
   * before the page's first turn stay before it, the rest go after, newest last by seq.
   */
  #merge(messages: readonly HistoryMessage[], which: "newest" | "older"): void {
    const paged: TurnRecord[] = [];
    for (const message of messages) {
      let record = paged.find((t) => t.stored?.runId === message.runId) ??
        this.#find(message.runId);
      if (!record) record = { order: this.#order++ };
      if (!paged.includes(record)) paged.push(record);
      record.stored = storeMessage(record.stored, message);
    }
    const rest = this.#turns.filter((t) => !paged.includes(t));
    if (which === "older") {
      this.#turns = [...paged, ...rest];
      return;
    }
    const first = this.#turns.findIndex((t) => paged.includes(t));
    const before = first < 0 ? [] : rest.filter((t) => this.#turns.indexOf(t) < first);
    const after = rest.filter((t) => !before.includes(t)).sort(bySeq);
    this.#turns = [...before, ...paged, ...after];
  }

  #changed(): void {
    this.#snapshot = undefined;
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        reportError(error);
      }
    }
  }
}

function storeMessage(stored: StoredRun | undefined, message: HistoryMessage): StoredRun {
  const next = { ...stored, runId: message.runId, status: message.runStatus };
  if (message.role === "user") {
    next.userText ??= message.text;
    if (message.seq !== null) next.seq ??= message.seq;
  } else {
    next.reply = message.text;
    if (message.error) next.error = message.error;
  }
  return next;
}

function seqOf(record: TurnRecord): number | undefined {
  return record.run?.startSeq ?? record.stored?.seq;
}

function bySeq(a: TurnRecord, b: TurnRecord): number {
  const sa = seqOf(a) ?? Infinity;
  const sb = seqOf(b) ?? Infinity;
  return sa === sb ? a.order - b.order : sa - sb;
}

/** A turn as shown: the run's live view, unless the history says it ended and the run does not yet. */
function turnOf(record: TurnRecord): Turn {
  const { run, stored } = record;
  const runId = run?.runId ?? stored?.runId;
  const chatId = run?.chatId;
  const key = runId ?? chatId ?? `turn-${record.order}`;
  const seq = seqOf(record);
  const storedEnd = stored !== undefined && stored.status !== "running";
  if (run && !(storedEnd && !isSettled(run.state))) {
    const text = run.text !== "" || run.state === "completed" ? run.text : stored?.reply;
    return {
      key,
      runId,
      chatId,
      userText: run.userText ?? stored?.userText ?? "",
      steps: run.steps,
      reply: text,
      reasoning: run.reasoning,
      status: run.state,
      error: run.error?.message,
      errorCode: errorCodeOf(run.error),
      seq,
      pendingApprovals: run.pendingApprovals,
      run,
    };
  }
  const status: TurnStatus = stored?.status ?? "running";
  return {
    key,
    runId,
    chatId,
    userText: stored?.userText ?? run?.userText ?? "",
    steps: run?.steps ?? [],
    reply: stored?.reply,
    reasoning: run?.reasoning ?? "",
    status,
    error: stored?.error?.message ?? (status === "cancelled" ? "Cancelled" : undefined),
    errorCode: stored?.error?.code,
    seq,
    pendingApprovals: [],
    run,
  };
}

function isSettled(state: ChatRunState): boolean {
  return state !== "sending" && state !== "running";
}

function errorCodeOf(error: Error | undefined): string | undefined {
  if (error instanceof RunFailedError) return error.info?.code ?? error.status;
  if (error instanceof ChatRefusedError) return error.code;
  if (error instanceof RunLostError) return "lost";
  return undefined;
}
