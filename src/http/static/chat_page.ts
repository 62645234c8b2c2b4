/**
 * The chat page's script (served transpiled at `/js/http/static/chat_page.js`). In
 * development it gets a dev token for a user id kept in localStorage, connects with the
 * client library, and shows each run of the conversation as a live timeline.
 *
 * @module
 */
import { connect, Conversation } from "../../client/mod.ts";
import type { AgentSocketClient, ClientState, Turn, TurnStep } from "../../client/mod.ts";

// Deno's type library has no DOM, and `/// <reference lib="dom" />` would apply to the whole
// program `deno check` builds (it breaks other modules' stream types), so the page declares
// the small part of the DOM it uses.

/** An element, as far as this page uses one. */
interface PageElement {
  textContent: string | null;
  className: string;
  hidden: boolean;
  disabled: boolean;
  value: string;
  scrollTop: number;
  readonly scrollHeight: number;
  readonly clientHeight: number;
  readonly dataset: Record<string, string | undefined>;
  append(...nodes: (PageElement | string)[]): void;
  replaceChildren(...nodes: (PageElement | string)[]): void;
  addEventListener(type: string, listener: (event: PageEvent) => void): void;
  focus(): void;
}

/** A DOM event, as far as this page uses one. */
interface PageEvent {
  readonly target: PageElement | null;
  readonly key?: string;
  readonly shiftKey?: boolean;
  readonly isComposing?: boolean;
  preventDefault(): void;
}

const document = (globalThis as unknown as {
  document: {
    getElementById(id: string): PageElement | null;
    createElement(tag: string): PageElement;
  };
}).document;

const USER_KEY = "agentsocket.userId";
const THREAD_KEY = "agentsocket.threadId";

/** Dev tokens are not issued here (production, or not a loopback client). */
class DevTokensUnavailableError extends Error {
  constructor() {
    super("This server issues no dev tokens (production, or not a loopback client)");
    this.name = "DevTokensUnavailableError";
  }
}

function element(id: string): PageElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`The page has no #${id}`);
  return found;
}

const view = {
  conn: element("conn"),
  connLabel: element("conn-label"),
  timeline: element("timeline"),
  empty: element("empty"),
  notice: element("notice"),
  composer: element("composer"),
  message: element("message"),
  send: element("send"),
  stop: element("stop"),
  newChat: element("new-chat"),
  user: element("user"),
  position: element("position"),
};

/** Every state the client went through, for a reader (and the browser test). */
const stateLog: ClientState[] = ["connecting"];

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
  const response = await fetch("/auth/dev-token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId: user }),
  });
  if (response.status === 404) throw new DevTokensUnavailableError();
  if (!response.ok) throw new Error(`POST /auth/dev-token answered ${response.status}`);
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

function showNotice(text: string | undefined): void {
  view.notice.hidden = !text;
  view.notice.textContent = text ?? "";
}

function json(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function node(tag: string, className: string, text?: string): PageElement {
  const created = document.createElement(tag);
  if (className) created.className = className;
  if (text !== undefined) created.textContent = text;
  return created;
}

function renderStep(step: TurnStep, active: boolean): PageElement {
  if (step.kind === "thinking") {
    const item = node("li", "step thinking");
    item.append(node("span", "label", "Thinking "), step.text);
    return item;
  }
  const item = node("li", "step tool");
  item.dataset.tool = step.tool;
  item.dataset.done = String(step.done);
  const head = node("div", "");
  const pending = active ? " running…" : " (no result)";
  head.append(node("span", "label", `Tool · ${step.tool}`), step.done ? "" : pending);
  const io = node("div", "io");
  io.append(node("span", "", "input"), node("code", "", json(step.input)));
  if (step.error) {
    io.append(node("span", "", "error"), node("code", "", step.error.message ?? json(step.error)));
  } else if (step.done) {
    io.append(node("span", "", "output"), node("code", "tool-output", json(step.output)));
  }
  item.append(head, io);
  return item;
}

function statusText(turn: Turn): string | undefined {
  switch (turn.status) {
    case "sending":
      return "sending…";
    case "running":
      return turn.steps.length === 0 ? "starting…" : "working…";
    case "completed":
      return undefined;
    case "cancelled":
      return "cancelled";
    default:
      return `${turn.status}${turn.error ? `: ${turn.error}` : ""}`;
  }
}

function renderTurn(turn: Turn): PageElement {
  const article = node("article", "turn");
  article.dataset.key = turn.key;
  article.dataset.status = turn.status;
  if (turn.runId) article.dataset.runId = turn.runId;
  if (turn.userText) article.append(node("div", "bubble user", turn.userText));
  if (turn.steps.length > 0) {
    const steps = node("ol", "steps");
    const active = turn.status === "sending" || turn.status === "running";
    steps.append(...turn.steps.map((step) => renderStep(step, active)));
    article.append(steps);
  }
  if (turn.reply !== undefined) article.append(node("div", "bubble reply", turn.reply));
  const status = statusText(turn);
  if (status) article.append(node("div", `status ${turn.status}`, status));
  return article;
}

function main(client: AgentSocketClient): void {
  let conversation: Conversation;

  const render = () => {
    const timeline = view.timeline;
    const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 80;
    const turns = conversation.turns;
    view.empty.hidden = turns.length > 0;
    timeline.replaceChildren(view.empty, ...turns.map(renderTurn));
    if (atBottom) timeline.scrollTop = timeline.scrollHeight;
    const busy = conversation.busy;
    view.send.hidden = busy;
    view.stop.hidden = !busy;
    view.send.disabled = client.state === "closed";
    showNotice(conversation.notice);
    if (conversation.threadId) localStorage.setItem(THREAD_KEY, conversation.threadId);
    else localStorage.removeItem(THREAD_KEY);
  };

  const open = (threadId: string | undefined) => {
    conversation?.dispose();
    conversation = new Conversation(client, { threadId });
    conversation.onChange(render);
    render();
    if (threadId === undefined) return;
    conversation.load().then((found) => {
      if (!found) localStorage.removeItem(THREAD_KEY);
    }, (error: Error) => showNotice(`Could not load the history: ${error.message}`));
  };

  const send = (text: string) => {
    const trimmed = text.trim();
    if (!trimmed || conversation.busy) return;
    try {
      conversation.send(trimmed);
      view.message.value = "";
    } catch (error) {
      showNotice((error as Error).message);
    }
  };

  client.on("state", ({ to, error }) => {
    stateLog.push(to);
    showConnection(to, to === "closed" && error ? `(${error.message})` : undefined);
    render();
  });
  client.on("disconnected", ({ retryInMs }) => {
    if (retryInMs !== undefined && retryInMs > 0) {
      showConnection("reconnecting", `(retry in ${(retryInMs / 1000).toFixed(1)} s)`);
    }
  });
  client.on("ready", (ready) => {
    view.user.textContent = ready.userId;
    view.position.textContent = `${ready.resumed ? "resumed" : "connected"} at seq ${ready.seq}`;
  });
  client.on("event", (event) => {
    view.position.textContent = `seq ${event.seq}`;
  });

  view.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send(view.message.value);
  });
  view.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(view.message.value);
    }
  });
  view.stop.addEventListener("click", () => conversation.cancel());
  view.newChat.addEventListener("click", () => {
    localStorage.removeItem(THREAD_KEY);
    open(undefined);
    view.message.focus();
  });
  view.empty.addEventListener("click", (event) => {
    const text = event.target?.dataset?.text;
    if (text) send(text);
  });

  open(localStorage.getItem(THREAD_KEY) ?? undefined);
  Object.assign(globalThis, {
    agentsocketPage: {
      client,
      stateLog,
      get conversation() {
        return conversation;
      },
    },
  });
}

async function start(): Promise<void> {
  const user = userId();
  view.user.textContent = user;
  let first: string;
  try {
    first = await devToken(user);
  } catch (error) {
    showConnection("closed");
    showNotice(
      error instanceof DevTokensUnavailableError
        ? `${error.message}. Sign-in is not part of this demo page.`
        : `Could not get a token: ${(error as Error).message}`,
    );
    view.send.disabled = true;
    return;
  }
  let initial: string | undefined = first;
  const wsUrl = new URL("/ws", location.href);
  wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const client = connect({
    url: wsUrl,
    getToken: () => {
      const token = initial;
      initial = undefined;
      return token ?? devToken(user);
    },
  });
  main(client);
}

void start();
