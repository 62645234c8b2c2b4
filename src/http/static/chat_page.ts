/**
 * The chat page's script (served transpiled at `js/http/static/chat_page.js`). In development
 * it gets a dev token for a user id kept in localStorage and connects with the client library;
 * it shows the open thread as a live timeline, the user's threads in a side list, and a card
 * for every tool call waiting for the user's approval.
 *
 * Every URL it uses is relative to the document's base (`<base href>`), so the server mounts
 * it under a prefix by serving `<base href="/prefix/">` in place of `<base href="./">`.
 *
 * The open thread is in the address (`#thread=<id>`), so a reload, or the back button, comes
 * back to it; a reply still running is then replayed from its start by the server, and shown
 * where it was.
 *
 * @module
 */
import { ChatRefusedError, connect, Conversation } from "../../client/mod.ts";
import { asRunEvent } from "../../protocol/mod.ts";
import type { AgentSocketClient, ClientState } from "../../client/mod.ts";
import { announcementFor } from "./announcement.ts";
import { ApprovalCards } from "./approval_cards.ts";
import { failureText } from "./failure_text.ts";
import { byId, document, page } from "./page_dom.ts";
import { ThreadList } from "./thread_list.ts";
import { Timeline } from "./timeline.ts";

const USER_KEY = "agentsocket.userId";
/** Below this width the thread list is a drawer behind the "Chats" button (as in chat.css). */
const PHONE_QUERY = "(max-width: 760px)";

/** Dev tokens are not issued here (production, or not a loopback client). */
class DevTokensUnavailableError extends Error {
  constructor() {
    super("This server issues no dev tokens (production, or not a loopback client)");
    this.name = "DevTokensUnavailableError";
  }
}

const view = {
  conn: byId("conn"),
  connLabel: byId("conn-label"),
  title: byId("title"),
  timeline: byId("timeline"),
  turns: byId("turns"),
  empty: byId("empty"),
  loading: byId("loading"),
  older: byId("older"),
  announcer: byId("announcer"),
  approvals: byId("approvals"),
  notice: byId("notice"),
  composer: byId("composer"),
  message: byId("message"),
  send: byId("send"),
  stop: byId("stop"),
  newChat: byId("new-chat"),
  main: byId("main"),
  sidebar: byId("sidebar"),
  backdrop: byId("backdrop"),
  toggleThreads: byId("toggle-threads"),
  closeThreads: byId("close-threads"),
  threads: byId("threads"),
  moreThreads: byId("more-threads"),
  threadsStatus: byId("threads-status"),
  confirmDelete: byId("confirm-delete"),
  user: byId("user"),
  position: byId("position"),
};

/** Every state the client went through, for a reader (and the browser test). */
const stateLog: ClientState[] = ["connecting"];

/** A URL of this server, relative to the page's base (`api/threads`, `ws`, …). */
function serverUrl(path: string): URL {
  return new URL(path, document.baseURI);
}

/**
 * The `fetch` of the client's REST calls. The client asks for its paths (api/threads, …) at
 * the server's root; under a base path those routes live at `<base>api/…`, so a path outside
 * the base is moved under it (at the root, every path is inside the base: nothing changes).
 */
function baseFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const base = serverUrl(".");
  if (url.origin === base.origin && !url.pathname.startsWith(base.pathname)) {
    url.pathname = base.pathname + url.pathname.replace(/^\//, "");
  }
  return fetch(url, init);
}

function userId(): string {
  let id = localStorage.getItem(USER_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(4));
    id = `user-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    localStorage.setItem(USER_KEY, id);
  }
  return id;
}

async function devToken(user: string): Promise<string> {
  const response = await fetch(serverUrl("auth/dev-token"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId: user }),
  });
  if (response.status === 404) throw new DevTokensUnavailableError();
  if (!response.ok) throw new Error(`POST auth/dev-token answered ${response.status}`);
  return ((await response.json()) as { token: string }).token;
}

function showConnection(state: ClientState, detail?: string): void {
  view.conn.dataset.state = state;
  const labels: Record<ClientState, string> = {
    connecting: "connecting…",
    ready: "connected",
    reconnecting: "reconnecting…",
    closed: "disconnected",
  };
  view.connLabel.textContent = detail ? `${labels[state]} ${detail}` : labels[state];
}

function threadFromHash(): string | undefined {
  return new URLSearchParams(page.location.hash.replace(/^#/, "")).get("thread") ?? undefined;
}

/** How opening a thread changes the address: a new entry, the same entry, or nothing. */
type AddressChange = "push" | "replace" | "none";

/** The page: one conversation shown at a time, the thread list, the approval cards. */
class ChatPage {
  #client: AgentSocketClient;
  #conversation: Conversation;
  #timeline: Timeline;
  #threads: ThreadList;
  #approvals: ApprovalCards;
  #renderQueued = false;
  #loading = false;
  #notice?: string;
  #stickToEnd = false;
  /** Events up to this seq were sent before the current connection was ready (a replay). */
  #liveAfter = Infinity;
  #phone = page.matchMedia(PHONE_QUERY);

  constructor(client: AgentSocketClient) {
    this.#client = client;
    this.#conversation = new Conversation(client);
    this.#timeline = new Timeline({
      scroller: view.timeline,
      list: view.turns,
      onRetry: (turn) => {
        // The server no longer has the thread: the text goes to a new one.
        if (turn.errorCode === "not_found") this.open(undefined, "push");
        // The button is disabled while the new run goes: the focus goes to the message box.
        if (this.#ask(turn.userText)) view.message.focus();
      },
    });
    this.#threads = new ThreadList({
      list: view.threads,
      more: view.moreThreads,
      status: view.threadsStatus,
      confirm: view.confirmDelete,
      api: client,
      onOpen: (threadId) => {
        this.open(threadId, "push");
        this.#setDrawer(false);
        // On a phone the focus stays off the message box, or its keyboard would cover the page.
        if (!this.#phone.matches) view.message.focus();
      },
      onDeleted: (threadId) => {
        if (threadId === this.#conversation.threadId) this.open(undefined, "replace");
        this.#schedule();
      },
      onError: (message) => this.#showNotice(message),
      onChange: () => this.#schedule(),
    });
    this.#approvals = new ApprovalCards({
      root: view.approvals,
      threadTitle: (threadId) => this.#threads.title(threadId),
      currentThread: () => this.#conversation.threadId,
      onOpenThread: (threadId) => this.open(threadId, "push"),
      fallbackFocus: () => view.message,
    });
    this.#listen();
  }

  /** The conversation shown. */
  get conversation(): Conversation {
    return this.#conversation;
  }

  /** Opens the thread in the address, lists the threads, and shows the pending approvals. */
  start(): void {
    this.open(threadFromHash(), "none");
    this.#approvals.show(this.#client.pendingApprovals);
    void this.#threads.refresh();
    if (!this.#phone.matches) view.message.focus();
  }

  /** Shows a thread (its history, merged with its replies in flight), or a new chat. */
  open(threadId: string | undefined, address: AddressChange): void {
    if (threadId !== undefined && threadId === this.#conversation.threadId) return;
    this.#conversation.dispose();
    const conversation = new Conversation(this.#client, { threadId });
    this.#conversation = conversation;
    this.#notice = undefined;
    this.#loading = threadId !== undefined;
    this.#setAddress(threadId, address);
    conversation.onChange(() => this.#schedule());
    this.#stickToEnd = true;
    this.#schedule();
    if (threadId === undefined) return;
    conversation.load().then((found) => {
      if (conversation !== this.#conversation) return;
      this.#loading = false;
      this.#stickToEnd = true;
      if (!found) {
        this.#notice = "That conversation does not exist any more; a message starts a new one.";
        this.#setAddress(undefined, "replace");
      }
      this.#schedule();
    }, (error: Error) => {
      if (conversation !== this.#conversation) return;
      this.#loading = false;
      this.#showNotice(`Could not load the conversation: ${error.message}`);
    });
  }

  #listen(): void {
    const client = this.#client;
    client.on("state", ({ to, error }) => {
      stateLog.push(to);
      showConnection(to, to === "closed" && error ? `(${error.message})` : undefined);
      this.#schedule();
    });
    client.on("disconnected", ({ retryInMs }) => {
      if (retryInMs !== undefined && retryInMs > 0) {
        showConnection("reconnecting", `(retry in ${(retryInMs / 1000).toFixed(1)} s)`);
      }
    });
    client.on("ready", (ready) => {
      this.#liveAfter = ready.seq;
      view.user.textContent = ready.userId;
      view.position.textContent = `${ready.resumed ? "resumed" : "connected"} at seq ${ready.seq}`;
      void this.#threads.refresh(); // threads begun or renamed while away
    });
    client.on("reset", () => void this.#threads.refresh());
    client.on("event", (frame) => {
      view.position.textContent = `seq ${frame.seq}`;
      this.#schedule(); // the list's "replying" marks follow the runs
      const event = asRunEvent(frame);
      if (!event || event.seq <= this.#liveAfter) return; // a replay: said before, if at all
      const here = event.threadId === this.#conversation.threadId;
      if (!here && event.name !== "tool_approval_requested") return;
      const sentence = announcementFor(event);
      if (sentence) view.announcer.textContent = sentence;
    });
    client.on("run", (run) => {
      // A thread begun in another tab (or by this one's first message).
      if (run.threadId && this.#threads.title(run.threadId) === undefined) {
        void this.#threads.refresh();
      }
      this.#schedule();
    });
    client.on("approvals", (pending) => {
      // A card takes room from the conversation: the newest turn stays in view.
      const atBottom = this.#timeline.atBottom;
      this.#approvals.show(pending);
      if (atBottom) this.#timeline.scrollToEnd();
    });

    view.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#askFromComposer();
    });
    view.message.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#askFromComposer();
      }
    });
    view.stop.addEventListener("click", () => {
      this.#conversation.cancel();
      view.message.focus(); // the Stop button hides once the run ends
    });
    view.newChat.addEventListener("click", () => {
      this.open(undefined, "push");
      this.#setDrawer(false);
      view.message.focus();
    });
    view.empty.addEventListener("click", (event) => {
      const text = event.target?.dataset?.text;
      if (text) this.#ask(text);
    });
    view.older.addEventListener("click", () => void this.#showOlder());
    view.toggleThreads.addEventListener("click", () => this.#setDrawer(!this.#drawerOpen));
    view.closeThreads.addEventListener("click", () => this.#setDrawer(false));
    view.backdrop.addEventListener("click", () => this.#setDrawer(false));
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || view.confirmDelete.open) return; // the dialog's own
      if (this.#threads.closeMenu({ focus: true })) return;
      if (this.#drawerOpen) this.#setDrawer(false);
    });
    page.addEventListener("hashchange", () => {
      const threadId = threadFromHash();
      if (threadId !== this.#conversation.threadId) this.open(threadId, "none");
    });
    page.addEventListener("resize", () => {
      if (!this.#phone.matches && this.#drawerOpen) this.#setDrawer(false);
    });
    // Another tab may have renamed or deleted a thread: there is no event for that.
    page.addEventListener("focus", () => void this.#threads.refresh());
  }

  /** Puts the previous page of history first, keeping what is on screen where it was. */
  async #showOlder(): Promise<void> {
    const conversation = this.#conversation;
    const scroller = view.timeline;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    view.older.disabled = true;
    try {
      await conversation.loadOlder();
    } catch (error) {
      this.#showNotice(`Could not load older messages: ${(error as Error).message}`);
    }
    view.older.disabled = false;
    if (conversation !== this.#conversation) return;
    this.#render();
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }

  #askFromComposer(): void {
    if (this.#ask(view.message.value)) view.message.value = "";
  }

  /** Sends `text` as a new chat on the open thread; `false` when it was not sent. */
  #ask(text: string): boolean {
    const trimmed = text.trim();
    if (!trimmed) return false;
    if (this.#conversation.busy) {
      this.#showNotice("Wait for the reply to finish, or stop it, before sending another.");
      return false;
    }
    try {
      this.#conversation.send(trimmed);
    } catch (error) {
      this.#showNotice(
        error instanceof ChatRefusedError
          ? failureText("refused", error.code) ?? error.message
          : (error as Error).message,
      );
      return false;
    }
    this.#notice = undefined;
    this.#stickToEnd = true;
    this.#schedule();
    return true;
  }

  #showNotice(text: string): void {
    this.#notice = text;
    this.#schedule();
  }

  get #drawerOpen(): boolean {
    return view.sidebar.dataset.open === "true";
  }

  /** Opens or closes the thread list on a phone-width screen (a drawer over the chat). */
  #setDrawer(open: boolean): void {
    if (open === this.#drawerOpen) return;
    view.sidebar.dataset.open = String(open);
    view.toggleThreads.setAttribute("aria-expanded", String(open));
    view.backdrop.hidden = !open;
    // While the drawer covers the chat, the chat takes no focus and no clicks.
    view.main.toggleAttribute("inert", open && this.#phone.matches);
    if (open) view.newChat.focus();
    else if (view.sidebar.contains(document.activeElement)) view.toggleThreads.focus();
  }

  #setAddress(threadId: string | undefined, change: AddressChange): void {
    if (change === "none") return;
    const url = new URL(page.location.href);
    url.hash = threadId === undefined ? "" : `thread=${encodeURIComponent(threadId)}`;
    if (url.href === page.location.href) return;
    if (change === "push") page.history.pushState(null, "", url.href);
    else page.history.replaceState(null, "", url.href);
  }

  /** Renders once the current burst of changes is over (a replay brings many at once). */
  #schedule(): void {
    if (this.#renderQueued) return;
    this.#renderQueued = true;
    queueMicrotask(() => {
      this.#renderQueued = false;
      this.#render();
    });
  }

  #render(): void {
    const conversation = this.#conversation;
    const threadId = conversation.threadId;
    if (threadId !== undefined && threadId !== threadFromHash()) {
      // The first message of a new chat began this thread.
      this.#setAddress(threadId, "replace");
      void this.#threads.refresh();
    }
    const turns = conversation.turns;
    const busy = conversation.busy;
    this.#timeline.render(turns, { busy });
    if (this.#stickToEnd) {
      this.#stickToEnd = false;
      this.#timeline.scrollToEnd();
    }
    view.loading.hidden = !(this.#loading && turns.length === 0);
    view.older.hidden = !conversation.hasOlder;
    view.empty.hidden = turns.length > 0 || this.#loading || threadId !== undefined;
    const sendHadFocus = document.activeElement === view.send;
    const stopHadFocus = document.activeElement === view.stop;
    view.send.hidden = busy;
    view.stop.hidden = !busy;
    // A keyboard user on Send (or Stop) stays on the button that took its place.
    if (busy && sendHadFocus) view.stop.focus();
    if (!busy && stopHadFocus) view.send.focus();
    view.send.disabled = this.#client.state === "closed";
    const notice = conversation.notice ?? this.#notice;
    view.notice.hidden = !notice;
    view.notice.textContent = notice ?? "";

    const title = threadId === undefined
      ? "New chat"
      : this.#threads.title(threadId) ?? turns[0]?.userText ?? "Conversation";
    if (view.title.textContent !== title) view.title.textContent = title;
    document.title = `${title} · agentsocket`;
    this.#threads.select(threadId);
    const running = new Set<string>();
    for (const run of this.#client.runs) if (run.threadId) running.add(run.threadId);
    const approvals = new Set(this.#client.pendingApprovals.map((a) => a.threadId));
    this.#threads.setActivity(running, approvals);
    this.#approvals.update();
  }
}

async function start(): Promise<void> {
  const user = userId();
  view.user.textContent = user;
  let first: string;
  try {
    first = await devToken(user);
  } catch (error) {
    showConnection("closed");
    view.notice.hidden = false;
    view.notice.textContent = error instanceof DevTokensUnavailableError
      ? `${error.message}. Sign-in is not part of this demo page.`
      : `Could not get a token: ${(error as Error).message}`;
    view.send.disabled = true;
    return;
  }
  let initial: string | undefined = first;
  const wsUrl = serverUrl("ws");
  wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
  const client = connect({
    url: wsUrl,
    apiUrl: serverUrl("."),
    fetch: baseFetch,
    getToken: () => {
      const token = initial;
      initial = undefined;
      return token ?? devToken(user);
    },
  });
  const chat = new ChatPage(client);
  chat.start();
  Object.assign(globalThis, {
    agentsocketPage: {
      client,
      stateLog,
      get conversation() {
        return chat.conversation;
      },
    },
  });
}

void start();
