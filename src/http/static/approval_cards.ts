/**
 * The approve/deny cards: one per tool call waiting for a person's decision, in every open
 * tab of the user (the client's `approvals` event lists them, whichever tab or thread started
 * the run). A card shows the tool, its input and when the request expires; Approve, or Deny
 * with an optional reason. It closes in every tab on the one `tool_approval_resolved`, since
 * that event is what takes the call off the client's list.
 *
 * @module
 */
import type { PendingApproval } from "../../client/mod.ts";
import { button, document, h, prettyJson } from "./page_dom.ts";
import type { PageElement } from "./page_dom.ts";

/** Options of {@link ApprovalCards}. */
export interface ApprovalCardsOptions {
  /** Where the cards go. */
  readonly root: PageElement;
  /** The title of a thread, when known. */
  readonly threadTitle: (threadId: string) => string | undefined;
  /** The thread the page shows. */
  readonly currentThread: () => string | undefined;
  /** "Open" on a card of another thread. */
  readonly onOpenThread: (threadId: string) => void;
  /** Where the focus goes when the card that had it closes. */
  readonly fallbackFocus: () => PageElement;
}

/** One card's elements. */
interface Card {
  readonly root: PageElement;
  readonly where: PageElement;
  readonly whereTitle: PageElement;
  readonly expiry: PageElement;
  readonly error: PageElement;
  readonly buttons: readonly PageElement[];
  readonly approval: PendingApproval;
}

const TICK_MS = 1000;

/** The cards of the approvals waiting for a decision; the only writer of them. */
export class ApprovalCards {
  #o: ApprovalCardsOptions;
  #cards = new Map<string, Card>();
  #ticker?: ReturnType<typeof setInterval>;

  constructor(options: ApprovalCardsOptions) {
    this.#o = options;
  }

  /** Shows exactly `pending` (oldest first): new cards appear, answered ones close. */
  show(pending: readonly PendingApproval[]): void {
    const ids = new Set(pending.map((approval) => approval.toolCallId));
    for (const [id, card] of this.#cards) {
      if (ids.has(id)) continue;
      const hadFocus = card.root.contains(document.activeElement);
      card.root.remove();
      this.#cards.delete(id);
      if (hadFocus) this.#o.fallbackFocus().focus(); // a keyboard user is not left nowhere
    }
    for (const approval of pending) {
      if (this.#cards.has(approval.toolCallId)) continue;
      const card = this.#createCard(approval);
      this.#cards.set(approval.toolCallId, card);
      this.#o.root.append(card.root);
    }
    this.#o.root.hidden = this.#cards.size === 0;
    this.update();
    if (this.#cards.size > 0 && this.#ticker === undefined) {
      this.#ticker = setInterval(() => this.update(), TICK_MS);
    } else if (this.#cards.size === 0 && this.#ticker !== undefined) {
      clearInterval(this.#ticker);
      this.#ticker = undefined;
    }
  }

  /** Updates what changes by itself: the time left, and the thread each card belongs to. */
  update(): void {
    const current = this.#o.currentThread();
    const now = Date.now();
    for (const card of this.#cards.values()) {
      const { threadId, expiresAt } = card.approval;
      card.where.hidden = threadId === current;
      card.whereTitle.textContent = this.#o.threadTitle(threadId) ?? "another conversation";
      const left = Date.parse(expiresAt) - now;
      const text = Number.isNaN(left)
        ? "soon"
        : left > 0
        ? `in ${clock(left)}`
        : "now (the server decides)";
      if (card.expiry.textContent !== text) card.expiry.textContent = text;
    }
  }

  #createCard(approval: PendingApproval): Card {
    const id = `approval-${approval.toolCallId}`;
    const reason = h("input", {
      attrs: { id: `${id}-reason`, type: "text", maxlength: "500", autocomplete: "off" },
    });
    const error = h("p", { className: "approval-error", hidden: true, attrs: { role: "alert" } });
    // While an answer is on its way the controls are aria-disabled, not disabled: a disabled
    // control loses the focus, and a keyboard user would be left on nothing.
    let sending = false;
    const setSending = (value: boolean) => {
      sending = value;
      for (const control of [...buttons, reason]) {
        control.setAttribute("aria-disabled", String(value));
      }
      reason.toggleAttribute("readonly", value);
    };
    const decide = (approved: boolean) => {
      if (sending) return;
      const text = reason.value.trim();
      setSending(true);
      error.hidden = true;
      approval.run.approve(approval.toolCallId, approved, approved || !text ? undefined : text)
        .catch((failure: Error) => {
          setSending(false);
          error.textContent = failure.message;
          error.hidden = false;
        });
    };
    const buttons = [
      button("Approve", { className: "approve", onClick: () => decide(true) }),
      button("Deny", { className: "deny danger", onClick: () => decide(false) }),
    ];
    reason.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      decide(false);
    });
    const whereTitle = h("b");
    const where = h("p", {
      className: "approval-where",
      children: [
        "In ",
        whereTitle,
        " ",
        button("Open", {
          className: "ghost small",
          onClick: () => this.#o.onOpenThread(approval.threadId),
        }),
      ],
    });
    const expiry = h("time", { attrs: { datetime: approval.expiresAt } });
    const root = h("article", {
      className: "approval",
      dataset: { toolCallId: approval.toolCallId, runId: approval.runId },
      attrs: { "aria-labelledby": `${id}-title` },
      children: [
        h("h2", {
          attrs: { id: `${id}-title` },
          children: ["Allow ", h("code", { text: approval.tool }), " to run?"],
        }),
        where,
        h("pre", {
          className: "approval-input",
          attrs: { "aria-label": "Input" },
          children: [h("code", { text: prettyJson(approval.input) })],
        }),
        h("p", { className: "approval-expiry", children: ["Expires ", expiry] }),
        h("div", {
          className: "approval-reason",
          children: [
            h("label", {
              attrs: { for: `${id}-reason` },
              text: "Reason, if you deny (optional)",
            }),
            reason,
          ],
        }),
        h("div", { className: "approval-actions", children: buttons }),
        error,
      ],
    });
    return { root, where, whereTitle, expiry, error, buttons, approval };
  }
}

function clock(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}
