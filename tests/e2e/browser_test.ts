/**
 * The chat page in a real browser (Debian's Chromium, driven by npm:playwright-core) against
 * the server as a real process, with `AGENT=llm` pointed at the local OpenAI-compatible test
 * server: gates in its scripted streams hold a reply open for exactly as long as a test needs
 * (the first piece is on the page while the model has not finished), with no timing assumption.
 * Skipped, with a message, where no Chromium is installed (`apt-get install -y chromium`).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { THREAD_PAGE_SIZE } from "../../src/http/static/thread_list.ts";
import { LOST_TEXT, RUN_FAILURE_TEXT } from "../../src/http/static/failure_text.ts";
import type { EventFrame, ThreadsResponse } from "../../src/protocol/mod.ts";
import { MODULE_PREFIX } from "../../src/server/page.ts";
import {
  findChromium,
  focusOutline,
  launchChromium,
  PageProbe,
  screenshot,
  tabTo,
} from "../_helpers/browser.ts";
import { Gate, httpError, startFakeOpenAiServer, stream } from "../_helpers/fake_openai_server.ts";
import type { FakeOpenAiServer } from "../_helpers/fake_openai_server.ts";
import { createServiceEnv } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";
import { TestClient } from "../_helpers/test_client.ts";

const CHROMIUM = findChromium();
if (!CHROMIUM) {
  console.warn(
    "browser tests skipped: no Chromium installed (apt-get install -y chromium, or set " +
      "CHROMIUM_PATH)",
  );
}

const WAIT_MS = 30_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** What Chromium logs by itself while the server is down: expected during a restart. */
const CONNECTION_REFUSED = [
  /WebSocket connection to '.*' failed/,
  /Failed to load resource: net::ERR_CONNECTION_REFUSED/,
];

function llmEnv(model: FakeOpenAiServer, extra: Record<string, string> = {}) {
  return {
    AGENT: "llm",
    LLM_BASE_URL: model.baseUrl,
    LLM_MODEL: "test-model",
    STREAM_FLUSH_MS: "20",
    ...extra,
  };
}

async function openPage(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
}

async function ask(page: Page, text: string): Promise<void> {
  await page.locator("#message").fill(text);
  await page.locator("#message").press("Enter");
}

/** The newest turn whose user message is exactly `text`. */
function turnOf(page: Page, text: string): Locator {
  return page.locator("article.turn", {
    has: page.locator(".bubble.user", { hasText: exactly(text) }),
  }).last();
}

function exactly(text: string): RegExp {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);
}

/** Waits until the turn of `text` has `status` and shows exactly `reply`. */
async function waitForTurn(
  page: Page,
  text: string,
  expected: { status: string; reply?: string },
): Promise<Locator> {
  const turn = page.locator(`article.turn[data-status="${expected.status}"]`, {
    has: page.locator(".bubble.user", { hasText: exactly(text) }),
  }).last();
  await turn.waitFor({ timeout: WAIT_MS });
  if (expected.reply !== undefined) {
    await turn.locator(".bubble.reply", { hasText: exactly(expected.reply) }).waitFor({
      timeout: WAIT_MS,
    });
  }
  return turn;
}

/** What the page shows of its turns, in order. */
async function shownTurns(page: Page): Promise<{ user: string; status: string; reply: string }[]> {
  return await page.evaluate(`[...document.querySelectorAll("article.turn")].map((turn) => ({
    user: turn.querySelector(".bubble.user").textContent,
    status: turn.dataset.status,
    reply: turn.querySelector(".bubble.reply").textContent,
  }))`) as { user: string; status: string; reply: string }[];
}

/** The thread ids of the side list, in order. */
async function listedThreads(page: Page): Promise<string[]> {
  return await page.evaluate(
    `[...document.querySelectorAll("#threads li.thread")].map((li) => li.dataset.threadId)`,
  ) as string[];
}

async function currentThread(page: Page): Promise<string | undefined> {
  return await page.evaluate("globalThis.agentsocketPage.conversation.threadId") as
    | string
    | undefined;
}

async function stateLog(page: Page): Promise<string[]> {
  return await page.evaluate("globalThis.agentsocketPage.stateLog") as string[];
}

async function pageUser(page: Page): Promise<string> {
  return await page.evaluate("localStorage.getItem('agentsocket.userId')") as string;
}

async function restThreads(server: ServerProcess, userId: string): Promise<ThreadsResponse> {
  const token = await server.devToken(userId);
  const response = await fetch(`${server.url}/api/threads?limit=200`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  return await response.json() as ThreadsResponse;
}

async function horizontalOverflow(page: Page): Promise<number> {
  return await page.evaluate(
    "document.documentElement.scrollWidth - document.documentElement.clientWidth",
  ) as number;
}

async function newBrowserPage(
  browser: Browser | BrowserContext,
  viewport = DESKTOP,
): Promise<{ page: Page; probe: PageProbe }> {
  const page = await browser.newPage();
  await page.setViewportSize(viewport); // a context's newPage() takes no viewport of its own
  return { page, probe: new PageProbe(page) };
}

Deno.test("GET / serves the page, its stylesheet and every module it loads, at relative URLs", async () => {
  await using server = await startServer();
  const html = await (await fetch(server.url)).text();
  // docs: a <base href> is all a base path needs, so every URL of the page is relative.
  assert.match(html, /<base href="\.\/">/);
  const script = /<script type="module" src="([^"]+)"/.exec(html)?.[1];
  assert.equal(script, `${MODULE_PREFIX.slice(1)}http/static/chat_page.js`);
  const stylesheet = /<link rel="stylesheet" href="([^"]+)"/.exec(html)?.[1];
  assert.equal(stylesheet, "static/chat.css");
  const css = await fetch(new URL(stylesheet!, `${server.url}/`));
  assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
  await css.body?.cancel();
  // Follow the imports as a browser would.
  const queue = [`/${script!}`];
  const seen = new Set<string>();
  while (queue.length > 0 && seen.size < 50) {
    const path = queue.shift()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const response = await fetch(server.url + path);
    assert.equal(response.status, 200, path);
    assert.match(response.headers.get("content-type") ?? "", /^text\/javascript/, path);
    const code = await response.text();
    if (path.startsWith(`${MODULE_PREFIX}http/static/`)) {
      // The page's own URLs are relative (the client's REST paths are moved under the base).
      assert.doesNotMatch(code, /["'`]\/(api|auth|ws|js|static)\b/, `${path} uses a root URL`);
    }
    for (const [, specifier] of code.matchAll(/^(?:import|export)\s[^;"']*?\bfrom\s*"([^"]+)"/gm)) {
      queue.push(new URL(specifier, `http://page${path}`).pathname);
    }
  }
  for (const module of ["client/mod.js", "protocol/mod.js", "http/static/timeline.js"]) {
    assert.ok(seen.has(`${MODULE_PREFIX}${module}`), module);
  }
});

Deno.test({
  name: "the chat page streams a model's reply, stops it, picks it up after a reload, shows it " +
    "in two tabs, explains a failure, and manages threads, on a desktop and a phone",
  ignore: !CHROMIUM,
  async fn(t) {
    await using model = startFakeOpenAiServer();
    await using server = await startServer({ env: llmEnv(model) });
    await using browser = await launchChromium(CHROMIUM!);
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page, probe } = await newBrowserPage(context);
    await openPage(page, server.url);
    const greeting = "Say hello";

    await t.step("the first piece of the reply shows before the model has finished", async () => {
      const gate = new Gate();
      model.reply(
        stream().reasoning("The user ", "wants a greeting.").text("Hello").gate(gate).text(
          ", world.",
        ),
      );
      await ask(page, greeting);
      await gate.reached;
      // The model is held after its first piece: whatever the page shows came from it.
      await waitForTurn(page, greeting, { status: "running", reply: "Hello" });
      const reasoning = turnOf(page, greeting).locator("details.reasoning");
      assert.equal(await reasoning.getAttribute("open"), null, "reasoning is folded");
      assert.equal(
        await reasoning.locator(".reasoning-text").textContent(),
        "The user wants a greeting.",
      );
      assert.ok(await page.locator("#stop").isVisible(), "Stop shows while the reply runs");
      gate.release();
      await waitForTurn(page, greeting, { status: "completed", reply: "Hello, world." });
      assert.ok(await page.locator("#send").isVisible());
      // For screen readers: the end of the reply is said, not each of its pieces.
      assert.equal(await page.locator("#announcer").textContent(), "The reply is complete.");
      await reasoning.locator("summary").click();
      assert.equal(await reasoning.getAttribute("open"), "");
      console.log(`screenshot: ${await screenshot(page, "page-desktop-reasoning.png")}`);
    });
    const greetingThread = (await currentThread(page))!;
    assert.ok(greetingThread);
    assert.match(page.url(), new RegExp(`#thread=${greetingThread}$`));

    await t.step("Stop cancels the running reply and keeps what it said", async () => {
      const gate = new Gate();
      const asked = model.requests.length;
      model.reply(stream().text("Once upon").gate(gate).text(" a time never shown"));
      await page.locator("#new-chat").click();
      await ask(page, "Tell me a story");
      await waitForTurn(page, "Tell me a story", { status: "running", reply: "Once upon" });
      await page.locator("#stop").click();
      const turn = await waitForTurn(page, "Tell me a story", {
        status: "cancelled",
        reply: "Once upon",
      });
      assert.equal(await turn.locator(".status").textContent(), "Stopped");
      await model.requests[asked].aborted; // the model's request was cut, not left running
      gate.release();
      assert.ok(await page.locator("#send").isVisible());
    });

    await t.step(
      "a reload in the middle of a reply shows the text so far, then the rest",
      async () => {
        const gate = new Gate();
        model.reply(stream().text("Part one.").gate(gate).text(" Part two."));
        await page.locator("#new-chat").click();
        await ask(page, "Two parts, please");
        await waitForTurn(page, "Two parts, please", { status: "running", reply: "Part one." });
        const before = page.url();
        await page.reload();
        await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
        assert.equal(page.url(), before);
        await waitForTurn(page, "Two parts, please", { status: "running", reply: "Part one." });
        gate.release();
        await waitForTurn(page, "Two parts, please", {
          status: "completed",
          reply: "Part one. Part two.",
        });
        assert.deepEqual(await shownTurns(page), [
          { user: "Two parts, please", status: "completed", reply: "Part one. Part two." },
        ]);
      },
    );

    await t.step("two pages of one user show the same reply as it streams", async () => {
      const { page: other, probe: otherProbe } = await newBrowserPage(context);
      await openPage(other, page.url()); // the same thread
      const gate = new Gate();
      model.reply(stream().text("Shared").gate(gate).text(" reply."));
      await ask(page, "Talk to both tabs");
      await waitForTurn(other, "Talk to both tabs", { status: "running", reply: "Shared" });
      gate.release();
      await waitForTurn(page, "Talk to both tabs", { status: "completed", reply: "Shared reply." });
      await waitForTurn(other, "Talk to both tabs", {
        status: "completed",
        reply: "Shared reply.",
      });
      assert.deepEqual(await shownTurns(other), await shownTurns(page));
      assert.deepEqual(otherProbe.errors, []);
      await other.close();
    });

    await t.step("a failed run says why in words, and Try again sends the text again", async () => {
      model.reply(httpError(401)); // provider_rejected, not retried
      await page.locator("#new-chat").click();
      await ask(page, "This one fails");
      const failed = await waitForTurn(page, "This one fails", { status: "failed" });
      const failure = failed.locator(".failure");
      assert.equal(await failure.getAttribute("data-code"), "provider_rejected");
      assert.equal(
        await failure.locator(".failure-text").textContent(),
        RUN_FAILURE_TEXT.provider_rejected,
      );
      model.reply(stream().text("Second time lucky."));
      await failed.locator("button.retry").click();
      await waitForTurn(page, "This one fails", {
        status: "completed",
        reply: "Second time lucky.",
      });
      const turns = await shownTurns(page);
      assert.deepEqual(turns.map((turn) => [turn.user, turn.status]), [
        ["This one fails", "failed"],
        ["This one fails", "completed"],
      ]);
    });

    const failedThread = (await currentThread(page))!;

    await t.step(
      "switching threads loads their history and keeps a running reply live",
      async () => {
        const gate = new Gate();
        model.reply(stream().text("Still").gate(gate).text(" going."));
        await page.locator("#new-chat").click();
        await ask(page, "A long reply");
        await waitForTurn(page, "A long reply", { status: "running", reply: "Still" });
        const longThread = (await currentThread(page))!;
        const longItem = page.locator(`li.thread[data-thread-id="${longThread}"]`);
        await page.locator(`li.thread[data-running="true"][data-thread-id="${longThread}"]`)
          .waitFor({ timeout: WAIT_MS });

        await page.locator(`li.thread[data-thread-id="${greetingThread}"] .thread-open`).click();
        await waitForTurn(page, greeting, { status: "completed", reply: "Hello, world." });
        assert.equal(await page.locator("#title").textContent(), greeting);
        assert.equal(await page.locator("article.turn").count(), 1);

        await longItem.locator(".thread-open").click();
        await waitForTurn(page, "A long reply", { status: "running", reply: "Still" });
        gate.release();
        await waitForTurn(page, "A long reply", { status: "completed", reply: "Still going." });
        await page.locator(`li.thread[data-running="false"][data-thread-id="${longThread}"]`)
          .waitFor({ timeout: WAIT_MS });
      },
    );

    await t.step("the list pages with Load more, newest first", async () => {
      model.fallback(stream().text("ok"));
      const user = await pageUser(page);
      const client = TestClient.open(server.wsUrl);
      await client.hello(await server.devToken(user));
      for (let i = 0; i < THREAD_PAGE_SIZE; i++) {
        client.send({ type: "chat", id: `filler-${i}`, text: `Filler ${i}` });
        await client.eventsUntil((e: EventFrame) => e.name === "agent_completed");
      }
      await client.close();
      const all = (await restThreads(server, user)).threads.map((thread) => thread.id);
      assert.ok(all.length > THREAD_PAGE_SIZE);
      await page.locator("#threads li.thread").nth(THREAD_PAGE_SIZE - 1).waitFor({
        timeout: WAIT_MS,
      });
      await page.locator(`#threads li.thread[data-thread-id="${all[0]}"]`).waitFor({
        timeout: WAIT_MS,
      });
      assert.deepEqual(await listedThreads(page), all.slice(0, THREAD_PAGE_SIZE));
      await tabTo(page, "#more-threads", { backwards: true });
      await page.keyboard.press("Enter");
      await page.locator("#threads li.thread").nth(all.length - 1).waitFor({ timeout: WAIT_MS });
      assert.deepEqual(await listedThreads(page), all);
      // The button is gone with the last page: the focus is on the first thread it brought.
      await page.locator(
        `li.thread[data-thread-id="${all[THREAD_PAGE_SIZE]}"] .thread-open:focus`,
      ).waitFor({ timeout: WAIT_MS });
      assert.ok(await page.locator("#more-threads").isHidden(), "no Load more on the last page");
    });

    await t.step("rename and delete a thread from its menu", async () => {
      const user = await pageUser(page);
      const item = page.locator(`li.thread[data-thread-id="${greetingThread}"]`);
      await item.locator(".thread-open").click();
      await waitForTurn(page, greeting, { status: "completed" });
      // The menu from the keyboard: Enter opens it on its first item, arrows move, Escape
      // closes it and gives the focus back to its button.
      await tabTo(page, `li.thread[data-thread-id="${greetingThread}"] .thread-more`, {
        backwards: true,
        maxPresses: 80,
      });
      await page.keyboard.press("Enter");
      await item.locator('[role="menuitem"]:focus', { hasText: "Rename" }).waitFor({
        timeout: WAIT_MS,
      });
      await page.keyboard.press("ArrowDown");
      await item.locator('[role="menuitem"]:focus', { hasText: "Delete" }).waitFor({
        timeout: WAIT_MS,
      });
      await page.keyboard.press("Escape");
      await item.locator(".menu").waitFor({ state: "hidden", timeout: WAIT_MS });
      await item.locator(".thread-more:focus").waitFor({ timeout: WAIT_MS });
      await page.keyboard.press("Enter");
      await page.keyboard.press("Enter"); // Rename
      const input = item.locator(".rename input:focus");
      await input.waitFor({ timeout: WAIT_MS });
      assert.equal(await input.inputValue(), greeting);
      await page.keyboard.type("Greetings"); // the old title is selected: typing replaces it
      await page.keyboard.press("Enter");
      await item.locator(".thread-open:focus").waitFor({ timeout: WAIT_MS });
      await item.locator(".thread-title", { hasText: exactly("Greetings") }).waitFor({
        timeout: WAIT_MS,
      });
      await page.locator("#title", { hasText: exactly("Greetings") }).waitFor({ timeout: WAIT_MS });
      const renamed = (await restThreads(server, user)).threads.find((thread) =>
        thread.id === greetingThread
      );
      assert.equal(renamed?.title, "Greetings");

      await item.locator(".thread-more").click();
      await item.locator('.menu [role="menuitem"]', { hasText: "Delete" }).click();
      const dialog = page.locator("#confirm-delete");
      await dialog.waitFor({ timeout: WAIT_MS });
      assert.match((await dialog.textContent()) ?? "", /Greetings/);
      await dialog.locator('button[value="delete"]').click();
      await item.waitFor({ state: "detached", timeout: WAIT_MS });
      await page.locator("#title", { hasText: exactly("New chat") }).waitFor({ timeout: WAIT_MS });
      assert.equal(await currentThread(page), undefined);
      assert.doesNotMatch(page.url(), /#thread=/);
      const left = (await restThreads(server, user)).threads.map((thread) => thread.id);
      assert.ok(!left.includes(greetingThread), "the server no longer has it");
    });

    await t.step(
      "at phone width the thread list is behind a button, and Escape closes it",
      async () => {
        await page.locator(`li.thread[data-thread-id="${failedThread}"] .thread-open`).click();
        await waitForTurn(page, "This one fails", { status: "completed" });
        console.log(`screenshot: ${await screenshot(page, "page-desktop.png")}`);
        await page.setViewportSize(PHONE);
        assert.equal(await horizontalOverflow(page), 0, "no horizontal scroll at phone width");
        const sidebar = page.locator("#sidebar");
        await sidebar.locator("#new-chat").waitFor({ state: "hidden", timeout: WAIT_MS });
        assert.ok(await page.locator("#send").isVisible());
        console.log(`screenshot: ${await screenshot(page, "page-phone.png")}`);
        await page.locator("#toggle-threads").click();
        await sidebar.locator("#new-chat:focus").waitFor({ timeout: WAIT_MS });
        assert.equal(await page.locator("#toggle-threads").getAttribute("aria-expanded"), "true");
        console.log(`screenshot: ${await screenshot(page, "page-phone-threads.png")}`);
        await page.keyboard.press("Escape");
        await sidebar.locator("#new-chat").waitFor({ state: "hidden", timeout: WAIT_MS });
        await page.locator("#toggle-threads:focus").waitFor({ timeout: WAIT_MS });
        assert.equal(await horizontalOverflow(page), 0);
      },
    );

    assert.deepEqual(probe.errors, []);
    assert.deepEqual(await stateLog(page), ["connecting", "ready"]);
    assert.equal(model.unscripted, 0);
    await server.assertNoRaces();
    await context.close();
  },
});

Deno.test({
  name: "the approval card shows in every tab, closes in all of them on the one decision, and " +
    "works with the keyboard alone",
  ignore: !CHROMIUM,
  async fn(t) {
    await using model = startFakeOpenAiServer();
    await using server = await startServer({
      env: llmEnv(model, { TOOLS_REQUIRE_APPROVAL: "echo" }),
    });
    await using browser = await launchChromium(CHROMIUM!);
    const context = await browser.newContext({ viewport: DESKTOP });
    const { page, probe } = await newBrowserPage(context);
    const { page: other, probe: otherProbe } = await newBrowserPage(context, PHONE);
    await openPage(page, server.url);
    await openPage(other, server.url);

    await t.step("a denial from one tab closes the card in every tab", async () => {
      model.reply(
        stream().text("Let me echo that.").toolCall({
          id: "call_0",
          name: "echo",
          arguments: '{"text":"ship it"}',
        }),
        stream().text("Not echoed."),
      );
      await ask(page, "Echo ship it");
      for (const tab of [page, other]) {
        const card = tab.locator("article.approval");
        await card.waitFor({ timeout: WAIT_MS });
        assert.equal(await card.locator("h2 code").textContent(), "echo");
        assert.match((await card.locator(".approval-input").textContent()) ?? "", /ship it/);
        assert.match((await card.locator(".approval-expiry").textContent()) ?? "", /in \d+:\d\d/);
      }
      // The other tab shows a new chat: its card says where the request comes from.
      assert.ok(await other.locator(".approval-where").isVisible());
      assert.ok(await page.locator(".approval-where").isHidden());
      // A tab opened after the request sees it too (the run's events replay from its start).
      const { page: late, probe: lateProbe } = await newBrowserPage(context);
      await openPage(late, server.url);
      await late.locator("article.approval").waitFor({ timeout: WAIT_MS });
      await page.locator('li.step.tool[data-status="awaiting_approval"]').waitFor({
        timeout: WAIT_MS,
      });
      console.log(`screenshot: ${await screenshot(page, "page-approval-desktop.png")}`);
      console.log(`screenshot: ${await screenshot(other, "page-approval-phone.png")}`);
      assert.equal(await horizontalOverflow(other), 0);

      await other.locator("article.approval input").fill("not today");
      await other.locator("article.approval button.deny").click();
      for (const tab of [page, other, late]) {
        await tab.locator("article.approval").waitFor({ state: "detached", timeout: WAIT_MS });
      }
      const tool = page.locator('li.step.tool[data-status="failed"]');
      await tool.waitFor({ timeout: WAIT_MS });
      assert.match((await tool.textContent()) ?? "", /denied: not today/);
      const turn = await waitForTurn(page, "Echo ship it", { status: "completed" });
      assert.equal(
        await turn.locator(".bubble.reply").textContent(),
        "Let me echo that.\n\nNot echoed.",
      );
      const toolMessage = model.requests[1].body.messages.at(-1);
      assert.match(JSON.stringify(toolMessage), /not today/, "the reason went to the model");
      assert.deepEqual(lateProbe.errors, []);
      await late.close();
    });

    await t.step("keyboard alone: send a message and approve the tool call", async () => {
      model.reply(
        stream().toolCall({ id: "call_0", name: "echo", arguments: '{"text":"by keyboard"}' }),
        stream().text("Approved by keyboard."),
      );
      await tabTo(page, "#message");
      await page.keyboard.type("Echo by keyboard");
      await page.keyboard.press("Enter");
      await page.locator("article.approval").waitFor({ timeout: WAIT_MS });
      await other.locator("article.approval").waitFor({ timeout: WAIT_MS });
      const presses = await tabTo(page, "article.approval button.approve", { backwards: true });
      assert.ok(presses <= 3, `the card is next to the message box (${presses} presses)`);
      const outline = await focusOutline(page);
      assert.notEqual(outline.style, "none", "the focused button shows its focus");
      assert.ok(outline.width >= 2, `outline ${outline.width}px`);
      await page.keyboard.press("Enter");
      for (const tab of [page, other]) {
        await tab.locator("article.approval").waitFor({ state: "detached", timeout: WAIT_MS });
      }
      await page.locator("#message:focus").waitFor({ timeout: WAIT_MS }); // not left nowhere
      await waitForTurn(page, "Echo by keyboard", {
        status: "completed",
        reply: "Approved by keyboard.",
      });
      const tool = turnOf(page, "Echo by keyboard").locator("li.step.tool");
      assert.equal(await tool.getAttribute("data-status"), "completed");
      assert.match((await tool.textContent()) ?? "", /by keyboard/);
    });

    assert.deepEqual(probe.errors, []);
    assert.deepEqual(otherProbe.errors, []);
    assert.equal(model.unscripted, 0);
    await server.assertNoRaces();
    await context.close();
  },
});

Deno.test({
  name: "the chat page works under a base path given by <base href> alone",
  ignore: !CHROMIUM,
  async fn() {
    await using server = await startServer({ env: { AGENT_STEP_DELAY_MS: "20" } });
    await using proxy = startBasePathProxy(server, "/chat");
    await using browser = await launchChromium(CHROMIUM!);
    const { page, probe } = await newBrowserPage(browser);
    await openPage(page, `${proxy.url}/chat/`);
    await ask(page, "what is 6*7");
    const turn = await waitForTurn(page, "what is 6*7", { status: "completed" });
    assert.match((await turn.locator(".bubble.reply").textContent()) ?? "", /42/);
    await page.locator("#threads li.thread").first().waitFor({ timeout: WAIT_MS });
    assert.match(page.url(), /\/chat\/#thread=/);
    assert.deepEqual(proxy.outside, [], "every request stayed under /chat/");
    assert.ok(proxy.seen.some((path) => path.startsWith("/chat/api/threads")));
    assert.deepEqual(probe.errors, []);
  },
});

Deno.test({
  name: "the chat page survives a server restart mid-run (PostgreSQL + Redis): it reconnects, " +
    "resumes, and shows the whole run once",
  ignore: !CHROMIUM,
  async fn() {
    await using services = await createServiceEnv();
    const env = { ...services.env, AGENT_STEP_DELAY_MS: "400", DRAIN_SPREAD_MS: "50" };
    const first = await startServer({ env });
    let second: ServerProcess | undefined;
    try {
      await using browser = await launchChromium(CHROMIUM!);
      const { page, probe } = await newBrowserPage(browser);
      probe.allowed.push(...CONNECTION_REFUSED);
      await openPage(page, first.url);
      const epoch = await page.evaluate("globalThis.agentsocketPage.client.epoch");

      await ask(page, "what is 6*7");
      await page.locator("details.reasoning").waitFor({ timeout: WAIT_MS }); // mid-run
      // A graceful restart: the old process closes the sockets (1012), lets the run finish
      // into Redis, exits; the new one starts on the same port.
      const stopped = await first.stop("SIGTERM");
      assert.equal(stopped.code, 0, first.logs());
      await page.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: WAIT_MS });
      second = await startServer({ env, port: first.port });

      const turn = await waitForTurn(page, "what is 6*7", { status: "completed" });
      assert.match((await turn.locator(".bubble.reply").textContent()) ?? "", /42/);
      await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
      assert.equal(await page.locator("article.turn").count(), 1, "one turn");
      assert.equal(await turn.locator("details.reasoning").count(), 1);
      const tools = [];
      for (const tool of await turn.locator("li.step.tool").all()) {
        tools.push([await tool.getAttribute("data-tool"), await tool.getAttribute("data-done")]);
      }
      assert.deepEqual(tools, [["calculator", "true"]]);
      const states = await stateLog(page);
      assert.deepEqual(states.slice(0, 2), ["connecting", "ready"]);
      assert.ok(states.includes("reconnecting"), states.join());
      assert.equal(states.at(-1), "ready");
      // The log lives in Redis: the same epoch, so the page resumed rather than reset.
      assert.equal(await page.evaluate("globalThis.agentsocketPage.client.epoch"), epoch);
      assert.deepEqual(probe.errors, []);
      await second.assertNoRaces();
    } finally {
      await first.stop("SIGKILL");
      await second?.stop("SIGKILL");
    }
  },
});

Deno.test({
  name: "the chat page after a crash of a memory-only server: the lost run says so, and the " +
    "next message starts a new conversation",
  ignore: !CHROMIUM,
  async fn() {
    const env = { AGENT_STEP_DELAY_MS: "400" };
    const first = await startServer({ env });
    let second: ServerProcess | undefined;
    try {
      await using browser = await launchChromium(CHROMIUM!);
      const { page, probe } = await newBrowserPage(browser, PHONE);
      // The history of the lost thread answers 404, which Chromium logs: expected here.
      probe.allowed.push(...CONNECTION_REFUSED, /status of 404 \(Not Found\)/);
      await openPage(page, first.url);
      await ask(page, "what is 6*7");
      await page.locator("details.reasoning").waitFor({ timeout: WAIT_MS });
      await first.stop("SIGKILL"); // the run, the history and the log die with the process
      second = await startServer({ env, port: first.port });

      // A new epoch and an empty store: resumed:false, the thread is gone, the run is lost.
      const lost = await waitForTurn(page, "what is 6*7", { status: "lost" });
      assert.equal(await lost.locator(".failure-text").textContent(), LOST_TEXT);
      await page.locator("#notice:not([hidden])").waitFor({ timeout: WAIT_MS });
      assert.match((await page.locator("#notice").textContent()) ?? "", /no longer has/);
      assert.equal(await page.locator("article.turn").count(), 1, "shown once, not twice");

      await ask(page, "what is 2+3*4");
      const turn = await waitForTurn(page, "what is 2+3*4", { status: "completed" });
      assert.match((await turn.locator(".bubble.reply").textContent()) ?? "", /14/);
      assert.equal(await page.locator("#notice").isHidden(), true);
      assert.deepEqual(probe.errors, []);
    } finally {
      await first.stop("SIGKILL");
      await second?.stop("SIGKILL");
    }
  },
});

/** A reverse proxy that mounts `target` under `prefix`, as a host app would. */
interface BasePathProxy extends AsyncDisposable {
  readonly url: string;
  /** Every path asked for. */
  readonly seen: string[];
  /** Paths asked for outside the prefix (answered 404). */
  readonly outside: string[];
}

/**
 * Serves `target` under `prefix` (HTTP and the WebSocket), and gives the page the one thing
 * a base path needs: `<base href="/prefix/">` in place of `<base href="./">`.
 */
function startBasePathProxy(target: ServerProcess, prefix: string): BasePathProxy {
  const seen: string[] = [];
  const outside: string[] = [];
  const sockets = new Set<WebSocket>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const url = new URL(request.url);
    seen.push(url.pathname);
    if (!url.pathname.startsWith(`${prefix}/`)) {
      outside.push(url.pathname);
      return new Response("outside the base path", { status: 404 });
    }
    const path = url.pathname.slice(prefix.length);
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      return proxySocket(request, `${target.wsUrl.replace(/\/ws$/, "")}${path}`, sockets);
    }
    const headers = new Headers(request.headers);
    headers.delete("host");
    const body = request.method === "GET" || request.method === "HEAD"
      ? undefined
      : await request.arrayBuffer();
    const answer = await fetch(target.url + path + url.search, {
      method: request.method,
      headers,
      body,
      redirect: "manual",
    });
    if (path !== "/") return new Response(answer.body, answer);
    const html = await answer.text();
    const based = html.replace('<base href="./">', `<base href="${prefix}/">`);
    assert.notEqual(based, html, "the page has a <base href> to replace");
    return new Response(based, { status: answer.status, headers: answer.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    seen,
    outside,
    async [Symbol.asyncDispose]() {
      for (const socket of sockets) socket.close();
      await server.shutdown();
    },
  };
}

function proxySocket(request: Request, upstreamUrl: string, sockets: Set<WebSocket>): Response {
  const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",")
    .map((protocol) => protocol.trim()).filter(Boolean);
  const { socket, response } = Deno.upgradeWebSocket(
    request,
    offered.includes("agentsocket.v1") ? { protocol: "agentsocket.v1" } : {},
  );
  const upstream = new WebSocket(upstreamUrl, offered);
  const waiting: string[] = [];
  sockets.add(socket).add(upstream);
  const closeCode = (code: number) => code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
  socket.onmessage = (event) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(event.data);
    else waiting.push(event.data);
  };
  upstream.onopen = () => {
    for (const data of waiting.splice(0)) upstream.send(data);
  };
  upstream.onmessage = (event) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(event.data);
  };
  upstream.onclose = (event) => {
    sockets.delete(upstream);
    if (socket.readyState <= WebSocket.OPEN) socket.close(closeCode(event.code), event.reason);
  };
  socket.onclose = (event) => {
    sockets.delete(socket);
    if (upstream.readyState <= WebSocket.OPEN) upstream.close(closeCode(event.code));
  };
  return response;
}
