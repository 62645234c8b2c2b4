/**
 * The conversation as the page shows it: one article per turn (the user's message, the
 * reasoning folded in a `<details>`, the tool calls, the reply as it grows, and why it did not
 * complete). Each turn's elements are kept and patched in place, so a streamed piece appends
 * text instead of rebuilding the page, and an open `<details>`, a selection or the focus
 * survive the next piece.
 *
 * @module
 */
import type { Turn, TurnStep } from "../../client/mod.ts";
import { RunFailedError } from "../../client/mod.ts";
import { failureText } from "./failure_text.ts";
import { button, compactJson, h, setGrowingText } from "./page_dom.ts";
import type { PageElement } from "./page_dom.ts";

/** Options of {@link Timeline}. */
export interface TimelineOptions {
  /** The scrolling element. */
  readonly scroller: PageElement;
  /** Where the turns go. */
  readonly list: PageElement;
  /** "Try again" on a turn that did not complete: send its text again. */
  readonly onRetry: (turn: Turn) => void;
}

/** What the whole conversation says about each turn. */
export interface TimelineContext {
  /** A run is in flight on the conversation (a retry would be refused). */
  readonly busy: boolean;
}

/** Turns closer than this to the bottom keep the view at the bottom as they grow. */
const STICK_TO_BOTTOM_PX = 80;

/** The turns of the conversation shown, patched in place. */
export class Timeline {
  #o: TimelineOptions;
  #views: TurnView[] = [];

  constructor(options: TimelineOptions) {
    this.#o = options;
  }

  /** Shows `turns` (oldest first), reusing the elements of turns already shown. */
  render(turns: readonly Turn[], context: TimelineContext): void {
    const atBottom = this.atBottom;
    const byId = new Map<string, TurnView>();
    for (const view of this.#views) for (const id of view.ids) byId.set(id, view);
    const next: TurnView[] = [];
    for (const turn of turns) {
      // A turn's key moves from the chat id to the run id once acknowledged: find it by either.
      let view = [turn.key, turn.chatId, turn.runId]
        .map((id) => id === undefined ? undefined : byId.get(id))
        .find((found) => found !== undefined && !next.includes(found));
      view ??= new TurnView(this.#o.onRetry);
      view.update(turn, context);
      next.push(view);
    }
    for (const view of this.#views) if (!next.includes(view)) view.root.remove();
    const list = this.#o.list;
    next.forEach((view, index) => {
      // Move only what is out of place: moving a node would take the focus out of it.
      if (list.children[index] !== view.root) list.insertBefore(view.root, list.children[index]);
    });
    this.#views = next;
    if (atBottom) this.scrollToEnd();
  }

  /** Whether the view is at (or near) the newest turn, so it should stay there as it grows. */
  get atBottom(): boolean {
    const scroller = this.#o.scroller;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < STICK_TO_BOTTOM_PX;
  }

  /** Scrolls to the newest turn. */
  scrollToEnd(): void {
    this.#o.scroller.scrollTop = this.#o.scroller.scrollHeight;
  }
}

/** One turn's elements, and what they show. */
class TurnView {
  readonly root: PageElement;
  #user = h("div", { className: "bubble user" });
  #assistant = h("div", { className: "assistant" });
  #reasoning = h("details", { className: "reasoning", hidden: true });
  #reasoningTitle = h("summary", { text: "Reasoning" });
  #reasoningText = h("div", { className: "reasoning-text" });
  #tools = h("ol", { className: "steps", hidden: true, attrs: { "aria-label": "Tool calls" } });
  #toolViews = new Map<string, { item: PageElement; shown: string }>();
  #reply = h("div", { className: "bubble reply", hidden: true });
  #status = h("div", { className: "status", hidden: true });
  #failure = h("div", { className: "failure", hidden: true, attrs: { role: "alert" } });
  #retry: PageElement;
  #shown = { user: "", reasoning: "", reply: "", failure: "" };
  #ids: string[] = [];
  #turn?: Turn;

  constructor(onRetry: (turn: Turn) => void) {
    this.#retry = button("Try again", {
      className: "retry",
      onClick: () => {
        if (this.#turn?.userText) onRetry(this.#turn);
      },
    });
    this.#reasoning.append(this.#reasoningTitle, this.#reasoningText);
    this.#assistant.append(this.#reasoning, this.#tools, this.#reply, this.#status, this.#failure);
    this.root = h("article", { className: "turn", children: [this.#user, this.#assistant] });
  }

  /** The ids the turn is known by (its key, chat id and run id). */
  get ids(): readonly string[] {
    return this.#ids;
  }

  update(turn: Turn, context: TimelineContext): void {
    this.#turn = turn;
    this.#ids = [turn.key, turn.chatId, turn.runId].filter((id): id is string => !!id);
    const root = this.root;
    root.dataset.key = turn.key;
    root.dataset.status = turn.status;
    if (turn.runId) root.dataset.runId = turn.runId;
    const active = turn.status === "sending" || turn.status === "running";
    root.setAttribute("aria-busy", String(active));

    if (turn.userText !== this.#shown.user) {
      this.#user.textContent = this.#shown.user = turn.userText;
    }
    this.#user.hidden = turn.userText === "";

    const reply = turn.reply ?? "";
    this.#reasoning.hidden = turn.reasoning === "";
    const thinking = active && reply === "" && turn.steps.every((step) => step.kind !== "tool");
    this.#reasoningTitle.textContent = thinking ? "Thinking…" : "Reasoning";
    setGrowingText(this.#reasoningText, this.#shown.reasoning, turn.reasoning);
    this.#shown.reasoning = turn.reasoning;

    this.#updateTools(turn.steps, active);

    setGrowingText(this.#reply, this.#shown.reply, reply);
    this.#shown.reply = reply;
    const noReply = turn.status === "completed" && reply === "";
    this.#reply.hidden = reply === "" && !noReply;
    this.#reply.dataset.empty = String(noReply);
    const status = statusLine(turn);
    // The caret says the reply is being written: not while it waits for a tool or a person.
    this.#reply.toggleAttribute("data-streaming", active && reply !== "" && status === undefined);
    this.#status.hidden = status === undefined;
    this.#status.className = `status ${turn.status}`;
    if (status !== undefined && this.#status.textContent !== status) {
      this.#status.textContent = status;
    }

    this.#updateFailure(turn, context);
  }

  #updateTools(steps: readonly TurnStep[], active: boolean): void {
    const tools = steps.filter((step) => step.kind === "tool");
    this.#tools.hidden = tools.length === 0;
    for (const step of tools) {
      let view = this.#toolViews.get(step.toolCallId);
      if (!view) {
        view = { item: h("li", { className: "step tool" }), shown: "" };
        this.#toolViews.set(step.toolCallId, view);
        this.#tools.append(view.item);
      }
      const shown = JSON.stringify([step.status, step.done, active, step.approval?.resolution]);
      if (shown === view.shown) continue;
      view.shown = shown;
      renderTool(view.item, step, active);
    }
  }

  #updateFailure(turn: Turn, context: TimelineContext): void {
    const retryAfterMs = turn.run?.error instanceof RunFailedError
      ? turn.run.error.retryAfterMs
      : undefined;
    const sentence = failureText(turn.status, turn.errorCode, { retryAfterMs });
    this.#failure.hidden = sentence === undefined;
    this.#retry.disabled = context.busy;
    this.#retry.hidden = !turn.userText;
    if (sentence === undefined) return;
    this.#failure.dataset.code = turn.errorCode ?? turn.status;
    const key = `${sentence}\n${turn.errorCode}`;
    if (key === this.#shown.failure) return;
    this.#shown.failure = key;
    const code = turn.errorCode && turn.errorCode !== "unknown"
      ? h("code", { className: "failure-code", text: turn.errorCode })
      : undefined;
    this.#failure.replaceChildren(
      h("p", { className: "failure-text", text: sentence }),
      h("div", { className: "failure-actions", children: [this.#retry, code] }),
    );
  }
}

type ToolStep = Extract<TurnStep, { kind: "tool" }>;

function renderTool(item: PageElement, step: ToolStep, active: boolean): void {
  item.dataset.tool = step.tool;
  item.dataset.toolCallId = step.toolCallId;
  item.dataset.done = String(step.done);
  item.dataset.status = step.status;
  const io = h("dl", { className: "io" });
  io.append(h("dt", { text: "input" }), h("dd", { children: [code(step.input)] }));
  if (step.error) {
    io.append(
      h("dt", { text: "error" }),
      h("dd", { children: [h("code", { className: "tool-error", text: errorLine(step) })] }),
    );
  } else if (step.done) {
    io.append(
      h("dt", { text: "output" }),
      h("dd", { children: [code(step.output, "tool-output")] }),
    );
  }
  item.replaceChildren(
    h("div", {
      className: "tool-head",
      children: [
        h("span", { className: "label", text: `Tool · ${step.tool}` }),
        h("span", { className: "tool-state", text: toolState(step, active) }),
      ],
    }),
    io,
  );
}

function code(value: unknown, className = ""): PageElement {
  return h("code", { className, text: typeof value === "string" ? value : compactJson(value) });
}

function errorLine(step: ToolStep): string {
  const { code, message } = step.error!;
  if (!message) return code;
  return message.toLowerCase().includes(code.replaceAll("_", " "))
    ? message
    : `${message} (${code})`;
}

function toolState(step: ToolStep, active: boolean): string {
  switch (step.status) {
    case "awaiting_approval":
      return active ? "waiting for approval" : "not approved";
    case "approved":
      return active ? "approved, starting…" : "approved";
    case "denied": {
      const reason = step.approval?.resolution?.reason;
      const by = step.approval?.resolution?.by;
      const who = by === undefined || by === "user" ? "denied" : `not approved (${by})`;
      return reason ? `${who}: ${reason}` : who;
    }
    case "executing":
      return active ? "running…" : "no result";
    case "completed":
      return step.truncated ? "done (output cut)" : "done";
    case "failed":
      return failedState(step);
    default: {
      const unknown: never = step.status;
      return unknown;
    }
  }
}

/** Why a tool call ended without output, in a few words. */
function failedState(step: ToolStep): string {
  const resolution = step.approval?.resolution;
  switch (step.error?.code) {
    case "denied":
      return resolution?.reason ? `denied: ${resolution.reason}` : "denied";
    case "approval_timeout":
      return "not approved in time";
    case "cancelled":
      return "cancelled";
    default:
      return "failed";
  }
}

/** A short line under a turn: what it is doing, or that it was stopped. */
function statusLine(turn: Turn): string | undefined {
  switch (turn.status) {
    case "sending":
      return "Sending…";
    case "running": {
      if (turn.pendingApprovals.length > 0) return "Waiting for your approval…";
      const running = turn.steps.find((step) => step.kind === "tool" && !step.done);
      if (running?.kind === "tool") return `Running ${running.tool}…`;
      if ((turn.reply ?? "") !== "") return undefined; // the reply shows it is going
      return turn.reasoning === "" ? "Starting…" : "Thinking…";
    }
    case "cancelled":
      return "Stopped";
    case "completed":
    case "failed":
    case "refused":
    case "lost":
      return undefined; // the reply, or the failure block, says it
    default: {
      const unknown: never = turn.status;
      return unknown;
    }
  }
}
