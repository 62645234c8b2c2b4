/**
 * The chat page in a real browser (Debian's Chromium, driven by npm:playwright-core) against
 * the server as a real process: ask, watch the run's timeline, restart the server mid-run.
 * Skipped, with a message, where no Chromium is installed (`apt-get install -y chromium`).
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { MODULE_PREFIX } from "../../src/server/page.ts";
import { findChromium, launchChromium, PageProbe, screenshot } from "../_helpers/browser.ts";
import { createServiceEnv } from "../_helpers/services.ts";
import { startServer } from "../_helpers/start_server.ts";
import type { ServerProcess } from "../_helpers/start_server.ts";

const CHROMIUM = findChromium();
if (!CHROMIUM) {
  console.warn(
    "browser tests skipped: no Chromium installed (apt-get install -y chromium, or set " +
      "CHROMIUM_PATH)",
  );
}

const WAIT_MS = 30_000;
const DESKTOP = { width: 1100, height: 800 };
const PHONE = { width: 390, height: 844 };
/** What Chromium logs by itself while the server is down: expected during a restart. */
const CONNECTION_REFUSED = [
  /WebSocket connection to '.*' failed/,
  /Failed to load resource: net::ERR_CONNECTION_REFUSED/,
];

interface ShownTurn {
  readonly status: string | null;
  readonly user: string;
  readonly reply: string;
  readonly thinking: number;
  readonly tools: { tool: string | null; done: string | null; text: string }[];
}

/** The turns the page shows, read from the DOM. */
async function shownTurns(page: Page): Promise<ShownTurn[]> {
  const turns: ShownTurn[] = [];
  for (const turn of await page.locator("article.turn").all()) {
    const tools = [];
    for (const tool of await turn.locator("li.step.tool").all()) {
      tools.push({
        tool: await tool.getAttribute("data-tool"),
        done: await tool.getAttribute("data-done"),
        text: (await tool.textContent()) ?? "",
      });
    }
    turns.push({
      status: await turn.getAttribute("data-status"),
      user: (await turn.locator(".bubble.user").allTextContents()).join(""),
      reply: (await turn.locator(".bubble.reply").allTextContents()).join(""),
      thinking: await turn.locator("li.step.thinking").count(),
      tools,
    });
  }
  return turns;
}

async function stateLog(page: Page): Promise<string[]> {
  return await page.evaluate("globalThis.agentsocketPage.stateLog") as string[];
}

async function ask(page: Page, text: string): Promise<void> {
  await page.locator("#message").fill(text);
  await page.locator("#message").press("Enter");
}

async function openPage(page: Page, server: ServerProcess): Promise<void> {
  await page.goto(server.url);
  await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
}

Deno.test("GET / serves the page, its stylesheet and every module it loads, as JavaScript", async () => {
  await using server = await startServer();
  const html = await (await fetch(server.url)).text();
  const script = /<script type="module" src="([^"]+)"/.exec(html)?.[1];
  assert.equal(script, `${MODULE_PREFIX}http/static/chat_page.js`);
  const css = await fetch(`${server.url}/static/chat.css`);
  assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
  await css.body?.cancel();
  // Follow the imports as a browser would.
  const queue = [script!];
  const seen = new Set<string>();
  while (queue.length > 0 && seen.size < 50) {
    const path = queue.shift()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const response = await fetch(server.url + path);
    assert.equal(response.status, 200, path);
    assert.match(response.headers.get("content-type") ?? "", /^text\/javascript/, path);
    const code = await response.text();
    for (const [, specifier] of code.matchAll(/^(?:import|export)\s[^;"']*?\bfrom\s*"([^"]+)"/gm)) {
      queue.push(new URL(specifier, `http://page${path}`).pathname);
    }
  }
  assert.ok(
    seen.has(`${MODULE_PREFIX}client/mod.js`) && seen.has(`${MODULE_PREFIX}protocol/mod.js`),
  );
});

Deno.test({
  name: "the chat page answers 'what is 6*7' with 42 and shows the calculator call, on a desktop " +
    "and a phone",
  ignore: !CHROMIUM,
  async fn() {
    await using server = await startServer({ env: { AGENT_STEP_DELAY_MS: "60" } });
    await using browser = await launchChromium(CHROMIUM!);
    const page = await browser.newPage({ viewport: DESKTOP });
    const probe = new PageProbe(page);
    await openPage(page, server);

    await ask(page, "what is 6*7");
    await page.locator('article.turn[data-status="running"]').waitFor({ timeout: WAIT_MS });
    const reply = page.locator('article.turn[data-status="completed"] .bubble.reply');
    await reply.waitFor({ timeout: WAIT_MS });
    assert.match((await reply.textContent()) ?? "", /42/);
    const [turn, ...more] = await shownTurns(page);
    assert.equal(more.length, 0);
    assert.equal(turn.user, "what is 6*7");
    assert.equal(turn.thinking, 1);
    assert.equal(turn.tools.length, 1);
    assert.equal(turn.tools[0].tool, "calculator");
    assert.equal(turn.tools[0].done, "true");
    assert.match(turn.tools[0].text, /6\*7/);
    assert.match(turn.tools[0].text, /42/);
    assert.deepEqual(await stateLog(page), ["connecting", "ready"]);
    console.log(`screenshot: ${await screenshot(page, "chat-desktop.png")}`);

    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert.equal(overflow, 0, "no horizontal scroll at phone width");
    assert.ok(await page.locator("#send").isVisible());
    console.log(`screenshot: ${await screenshot(page, "chat-phone.png")}`);

    // A reload shows the same conversation, from the history.
    await page.reload();
    await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
    await page.locator(".bubble.reply").waitFor({ timeout: WAIT_MS });
    const reloaded = await shownTurns(page);
    assert.deepEqual(reloaded.map((t) => [t.user, t.status]), [["what is 6*7", "completed"]]);
    assert.match(reloaded[0].reply, /42/);
    assert.deepEqual(probe.errors, []);
    await server.assertNoRaces();
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
      const page = await browser.newPage({ viewport: DESKTOP });
      const probe = new PageProbe(page);
      probe.allowed.push(...CONNECTION_REFUSED);
      await openPage(page, first);
      const epoch = await page.evaluate("globalThis.agentsocketPage.client.epoch");

      await ask(page, "what is 6*7");
      await page.locator("li.step.thinking").waitFor({ timeout: WAIT_MS }); // mid-run
      // A graceful restart: the old process closes the sockets (1012), lets the run finish
      // into Redis, exits; the new one starts on the same port.
      const stopped = await first.stop("SIGTERM");
      assert.equal(stopped.code, 0, first.logs());
      await page.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: WAIT_MS });
      console.log(`screenshot: ${await screenshot(page, "chat-reconnecting.png")}`);
      second = await startServer({ env, port: first.port });

      const reply = page.locator('article.turn[data-status="completed"] .bubble.reply');
      await reply.waitFor({ timeout: WAIT_MS });
      assert.match((await reply.textContent()) ?? "", /42/);
      await page.locator('#conn[data-state="ready"]').waitFor({ timeout: WAIT_MS });
      const turns = await shownTurns(page);
      assert.equal(turns.length, 1, "one turn");
      assert.equal(turns[0].thinking, 1, "one thinking step");
      assert.deepEqual(turns[0].tools.map((t) => [t.tool, t.done]), [["calculator", "true"]]);
      const states = await stateLog(page);
      assert.deepEqual(states.slice(0, 2), ["connecting", "ready"]);
      assert.ok(states.includes("reconnecting"), states.join());
      assert.equal(states.at(-1), "ready");
      // The log lives in Redis: the same epoch, so the page resumed rather than reset.
      assert.equal(await page.evaluate("globalThis.agentsocketPage.client.epoch"), epoch);
      console.log(`screenshot: ${await screenshot(page, "chat-after-restart.png")}`);
      assert.deepEqual(probe.errors, []);
      await second.assertNoRaces();
    } finally {
      await first.stop("SIGKILL");
      await second?.stop("SIGKILL");
    }
  },
});

Deno.test({
  name: "the chat page after a crash of a memory-only server: the lost run settles with a " +
    "clear message, and the next message starts a new conversation",
  ignore: !CHROMIUM,
  async fn() {
    const env = { AGENT_STEP_DELAY_MS: "400" };
    const first = await startServer({ env });
    let second: ServerProcess | undefined;
    try {
      await using browser = await launchChromium(CHROMIUM!);
      const page = await browser.newPage({ viewport: PHONE });
      const probe = new PageProbe(page);
      // The history of the lost thread answers 404, which Chromium logs: expected here.
      probe.allowed.push(...CONNECTION_REFUSED, /status of 404 \(Not Found\)/);
      await openPage(page, first);
      await ask(page, "what is 6*7");
      await page.locator("li.step.thinking").waitFor({ timeout: WAIT_MS });
      await first.stop("SIGKILL"); // the run, the history and the log die with the process
      second = await startServer({ env, port: first.port });

      // A new epoch and an empty store: resumed:false, the thread is gone, the run is lost.
      const lost = page.locator('article.turn[data-status="lost"]');
      await lost.waitFor({ timeout: WAIT_MS });
      assert.match((await lost.locator(".status").textContent()) ?? "", /lost/);
      await page.locator("#notice:not([hidden])").waitFor({ timeout: WAIT_MS });
      assert.match((await page.locator("#notice").textContent()) ?? "", /no longer has/);
      assert.equal(await page.locator("article.turn").count(), 1, "shown once, not twice");

      await ask(page, "what is 2+3*4");
      const reply = page.locator('article.turn[data-status="completed"] .bubble.reply');
      await reply.waitFor({ timeout: WAIT_MS });
      assert.match((await reply.textContent()) ?? "", /14/);
      assert.equal(await page.locator("#notice").isHidden(), true);
      console.log(`screenshot: ${await screenshot(page, "chat-after-crash-phone.png")}`);
      assert.deepEqual(probe.errors, []);
    } finally {
      await first.stop("SIGKILL");
      await second?.stop("SIGKILL");
    }
  },
});
