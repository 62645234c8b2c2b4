/**
 * The side list of the user's threads: newest first, paged ("Load more" follows `nextCursor`),
 * each with a menu to rename it (in place) or delete it (after a confirmation dialog). It
 * shows which thread is open, which have a reply running and which wait for an approval.
 * Keyboard: every control is a button; the menu opens on its first item, arrows move in it,
 * Escape closes it and gives the focus back to its button.
 *
 * @module
 */
import type { AgentSocketClient, ThreadSummary } from "../../client/mod.ts";
import { button, document, h } from "./page_dom.ts";
import type { PageElement, PageEvent } from "./page_dom.ts";

/** The REST calls the list makes. */
export type ThreadApi = Pick<AgentSocketClient, "listThreads" | "renameThread" | "deleteThread">;

/** Options of {@link ThreadList}. */
export interface ThreadListOptions {
  /** The `<ul>` of threads. */
  readonly list: PageElement;
  /** The "Load more" button. */
  readonly more: PageElement;
  /** A line under the list: loading, empty, or what went wrong. */
  readonly status: PageElement;
  /** The `<dialog>` that confirms a deletion (`#confirm-delete-text` inside says what). */
  readonly confirm: PageElement;
  readonly api: ThreadApi;
  /** A thread was chosen. */
  readonly onOpen: (threadId: string) => void;
  /** A thread was deleted (from this list). */
  readonly onDeleted: (threadId: string) => void;
  /** Something failed; `message` says what, for people. */
  readonly onError: (message: string) => void;
  /** The threads changed (read again, renamed or deleted): titles may be different. */
  readonly onChange: () => void;
}

/** Threads per page of the list. */
export const THREAD_PAGE_SIZE = 20;
const MAX_LIMIT = 200;

/** One thread's elements. */
interface ThreadItem {
  readonly root: PageElement;
  readonly open: PageElement;
  readonly title: PageElement;
  readonly badge: PageElement;
  readonly more: PageElement;
  readonly menu: PageElement;
  readonly rename: PageElement;
  readonly input: PageElement;
}

/** The side list of threads; the only writer of what it shows. */
export class ThreadList {
  #o: ThreadListOptions;
  #threads: ThreadSummary[] = [];
  #next?: string;
  #loaded = false;
  #current?: string;
  #running: ReadonlySet<string> = new Set();
  #approvals: ReadonlySet<string> = new Set();
  #items = new Map<string, ThreadItem>();
  #menuOf?: string;
  #deleting?: string;
  #renaming?: {
    readonly threadId: string;
    readonly finish: (save: boolean, refocus: boolean) => Promise<void>;
  };
  #queue: Promise<void> = Promise.resolve();
  #refreshQueued = false;
  #loadingMore = false;

  constructor(options: ThreadListOptions) {
    this.#o = options;
    options.more.addEventListener("click", () => void this.loadMore());
    options.confirm.addEventListener("close", () => this.#confirmed());
    document.addEventListener("click", (event) => {
      const open = this.#menuOf === undefined ? undefined : this.#items.get(this.#menuOf);
      if (open && !open.root.contains(event.target)) this.closeMenu({ focus: false });
    });
  }

  /** The threads shown, newest first. */
  get threads(): readonly ThreadSummary[] {
    return this.#threads;
  }

  /** A thread's title, when the list has it. */
  title(threadId: string | undefined): string | undefined {
    return this.#threads.find((thread) => thread.id === threadId)?.title;
  }

  /** Marks the open thread (`undefined`: a new chat). */
  select(threadId: string | undefined): void {
    if (threadId === this.#current) return;
    this.#current = threadId;
    this.#render();
  }

  /** Marks the threads with a reply running and those waiting for an approval. */
  setActivity(running: ReadonlySet<string>, approvals: ReadonlySet<string>): void {
    if (sameSet(running, this.#running) && sameSet(approvals, this.#approvals)) return;
    this.#running = running;
    this.#approvals = approvals;
    this.#render();
  }

  /** Reads the newest threads again (as many as are shown), e.g. after a new thread began. */
  refresh(): Promise<void> {
    if (this.#refreshQueued) return this.#queue;
    this.#refreshQueued = true;
    return this.#enqueue(async () => {
      this.#refreshQueued = false;
      const limit = Math.min(MAX_LIMIT, Math.max(THREAD_PAGE_SIZE, this.#threads.length));
      const page = await this.#o.api.listThreads({ limit });
      const fresh = new Set(page.items.map((thread) => thread.id));
      const tail = this.#threads.length > limit
        ? this.#threads.slice(limit).filter((thread) => !fresh.has(thread.id))
        : [];
      this.#threads = [...page.items, ...tail];
      if (tail.length === 0) this.#next = page.nextCursor;
    });
  }

  /** Reads the next, older page (a click while one is read is ignored). */
  loadMore(): Promise<void> {
    if (this.#loadingMore) return this.#queue;
    this.#loadingMore = true;
    // Busy, not disabled: a disabled button drops the focus of the keyboard user who pressed it.
    this.#o.more.setAttribute("aria-busy", "true");
    const before = this.#threads.length;
    const hadFocus = document.activeElement === this.#o.more;
    return this.#enqueue(async () => {
      if (this.#next === undefined) return;
      const page = await this.#o.api.listThreads({ limit: THREAD_PAGE_SIZE, before: this.#next });
      const known = new Set(this.#threads.map((thread) => thread.id));
      this.#threads.push(...page.items.filter((thread) => !known.has(thread.id)));
      this.#next = page.nextCursor;
    }).then(() => {
      this.#loadingMore = false;
      this.#o.more.removeAttribute("aria-busy");
      // After the last page the button goes: the focus goes to the first thread it brought.
      const first = this.#threads[before];
      if (hadFocus && this.#o.more.hidden && first) this.#items.get(first.id)?.open.focus();
    });
  }

  /**
   * Closes the open menu.
   *
   * @returns Whether one was open (Escape is then spent).
   */
  closeMenu(options: { focus: boolean }): boolean {
    const id = this.#menuOf;
    if (id === undefined) return false;
    this.#menuOf = undefined;
    const item = this.#items.get(id);
    if (!item) return true;
    item.menu.hidden = true;
    item.more.setAttribute("aria-expanded", "false");
    if (options.focus) item.more.focus();
    return true;
  }

  #enqueue(work: () => Promise<void>): Promise<void> {
    this.#o.status.textContent = this.#loaded ? "" : "Loading…";
    this.#queue = this.#queue.then(work).then(() => {
      this.#loaded = true;
      this.#render();
      this.#o.onChange();
    }, (error: Error) => {
      this.#render();
      this.#o.status.textContent = `Could not load the conversations: ${error.message}`;
    });
    return this.#queue;
  }

  #render(): void {
    const list = this.#o.list;
    const order: ThreadItem[] = [];
    for (const thread of this.#threads) {
      const item = this.#items.get(thread.id) ?? this.#createItem(thread.id);
      this.#items.set(thread.id, item);
      if (item.title.textContent !== thread.title) item.title.textContent = thread.title;
      item.open.title = thread.title;
      item.more.setAttribute("aria-label", `More actions for “${thread.title}”`);
      if (thread.id === this.#current) item.open.setAttribute("aria-current", "page");
      else item.open.removeAttribute("aria-current");
      const approval = this.#approvals.has(thread.id);
      const running = this.#running.has(thread.id);
      item.root.dataset.running = String(running);
      item.root.dataset.approval = String(approval);
      item.badge.hidden = !approval && !running;
      item.badge.textContent = approval ? "approval" : running ? "replying" : "";
      order.push(item);
    }
    for (const [id, item] of this.#items) {
      if (order.includes(item)) continue;
      item.root.remove();
      this.#items.delete(id);
      if (this.#menuOf === id) this.#menuOf = undefined;
    }
    order.forEach((item, index) => {
      // Move only what is out of place: moving a node would take the focus out of it.
      if (list.children[index] !== item.root) list.insertBefore(item.root, list.children[index]);
    });
    this.#o.more.hidden = this.#next === undefined;
    this.#o.status.textContent = this.#loaded && this.#threads.length === 0
      ? "No conversations yet."
      : "";
  }

  #createItem(threadId: string): ThreadItem {
    const title = h("span", { className: "thread-title" });
    const badge = h("span", { className: "badge", hidden: true });
    const open = button("", {
      className: "thread-open",
      children: [title, badge],
      onClick: () => this.#o.onOpen(threadId),
    });
    const menu = h("div", { className: "menu", hidden: true, attrs: { role: "menu" } });
    const more = button("⋯", {
      className: "thread-more ghost",
      attrs: { "aria-haspopup": "menu", "aria-expanded": "false" },
      onClick: () => this.#toggleMenu(threadId),
    });
    const input = h("input", {
      attrs: { type: "text", maxlength: "200", "aria-label": "New title", required: "" },
    });
    const rename = h("form", { className: "rename", hidden: true, children: [input] });
    const item: ThreadItem = {
      root: h("li", { className: "thread", dataset: { threadId }, children: [open, more, menu] }),
      open,
      title,
      badge,
      more,
      menu,
      rename,
      input,
    };
    item.root.append(rename);
    menu.append(
      button("Rename", {
        attrs: { role: "menuitem" },
        onClick: () => this.#startRename(threadId),
      }),
      button("Delete", {
        className: "danger",
        attrs: { role: "menuitem" },
        onClick: () => this.#askDelete(threadId),
      }),
    );
    menu.addEventListener("keydown", (event) => this.#menuKey(item, event));
    rename.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#endRename(threadId, true, true);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      event.stopPropagation();
      this.#endRename(threadId, false, true);
    });
    input.addEventListener("blur", () => this.#endRename(threadId, true, false));
    item.root.addEventListener("focusout", (event) => {
      const to = event.relatedTarget ?? null;
      if (this.#menuOf === threadId && to !== null && !menu.contains(to) && to !== more) {
        this.closeMenu({ focus: false });
      }
    });
    return item;
  }

  #toggleMenu(threadId: string): void {
    const wasOpen = this.#menuOf === threadId;
    this.closeMenu({ focus: false });
    if (wasOpen) return;
    const item = this.#items.get(threadId);
    if (!item) return;
    this.#menuOf = threadId;
    item.menu.hidden = false;
    item.more.setAttribute("aria-expanded", "true");
    item.menu.querySelector("button")?.focus();
  }

  #menuKey(item: ThreadItem, event: PageEvent): void {
    const entries = Array.from(item.menu.querySelectorAll("button"));
    const at = entries.findIndex((entry) => entry === document.activeElement);
    const move = (to: number) => {
      event.preventDefault();
      entries[(to + entries.length) % entries.length]?.focus();
    };
    switch (event.key) {
      case "ArrowDown":
        return move(at + 1);
      case "ArrowUp":
        return move(at - 1);
      case "Home":
        return move(0);
      case "End":
        return move(entries.length - 1);
      case "Escape":
        event.preventDefault();
        event.stopPropagation();
        this.closeMenu({ focus: true });
        return;
      case "Tab":
        this.closeMenu({ focus: false });
        return;
    }
  }

  #startRename(threadId: string): void {
    this.closeMenu({ focus: false });
    const item = this.#items.get(threadId);
    const thread = this.#threads.find((t) => t.id === threadId);
    if (!item || !thread) return;
    let done = false;
    this.#renaming = {
      threadId,
      finish: async (save: boolean, refocus: boolean) => {
        if (done) return;
        done = true;
        this.#renaming = undefined;
        const title = item.input.value.trim();
        item.rename.hidden = true;
        item.open.hidden = false;
        item.more.hidden = false;
        if (refocus) item.open.focus();
        if (!save || title === "" || title === thread.title) return;
        item.title.textContent = title; // at once; the server's answer confirms it
        try {
          const renamed = await this.#o.api.renameThread(threadId, title);
          this.#threads = this.#threads.map((t) => t.id === threadId ? renamed : t);
        } catch (error) {
          this.#o.onError(`Could not rename the conversation: ${(error as Error).message}`);
        }
        this.#render();
        this.#o.onChange();
      },
    };
    item.input.value = thread.title;
    item.open.hidden = true;
    item.more.hidden = true;
    item.rename.hidden = false;
    item.input.focus();
    item.input.select();
  }

  /** Ends the rename of `threadId`, if it is being renamed. */
  #endRename(threadId: string, save: boolean, refocus: boolean): void {
    if (this.#renaming?.threadId === threadId) void this.#renaming.finish(save, refocus);
  }

  #askDelete(threadId: string): void {
    this.closeMenu({ focus: false });
    const title = this.title(threadId);
    if (title === undefined) return;
    this.#deleting = threadId;
    const text = this.#o.confirm.querySelector("#confirm-delete-text");
    if (text) {
      text.textContent = `Delete “${title}”? Its messages go too, and a reply in progress stops.`;
    }
    this.#o.confirm.returnValue = "";
    this.#o.confirm.showModal();
  }

  async #confirmed(): Promise<void> {
    const threadId = this.#deleting;
    this.#deleting = undefined;
    if (threadId === undefined) return;
    const index = this.#threads.findIndex((thread) => thread.id === threadId);
    const item = this.#items.get(threadId);
    if (this.#o.confirm.returnValue !== "delete") {
      item?.more.focus();
      return;
    }
    try {
      await this.#o.api.deleteThread(threadId);
    } catch (error) {
      this.#o.onError(`Could not delete the conversation: ${(error as Error).message}`);
      item?.more.focus();
      return;
    }
    this.#threads = this.#threads.filter((thread) => thread.id !== threadId);
    this.#render();
    // The focus goes to the thread that took its place, so a keyboard user stays in the list.
    const neighbour = this.#threads[Math.min(index, this.#threads.length - 1)];
    const next = neighbour ? this.#items.get(neighbour.id)?.open : undefined;
    this.#o.onDeleted(threadId);
    next?.focus();
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
