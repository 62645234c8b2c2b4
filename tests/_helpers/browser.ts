/**
 * Debian's Chromium driven by npm:playwright-core, for the browser e2e tests: where it is,
 * how to launch it here (no sandbox, no GPU, no background traffic), and a page probe that
 * records every page error and console error.
 *
 * @module
 */
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";

/** Where screenshots go (gitignored). */
export const TEST_OUTPUT_DIR = new URL("../../test-output/", import.meta.url);

const CANDIDATES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];

/**
 * The Chromium executable: `CHROMIUM_PATH` when set, else the first candidate on `PATH`.
 *
 * @returns Its path, or `undefined` when none is installed.
 */
export function findChromium(): string | undefined {
  const explicit = Deno.env.get("CHROMIUM_PATH");
  if (explicit) return explicit;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    for (const name of CANDIDATES) {
      const path = `${dir}/${name}`;
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/** Launches headless Chromium; close it with `await using`. */
export async function launchChromium(
  executablePath: string,
): Promise<Browser & AsyncDisposable> {
  const browser = await chromium.launch({
    executablePath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-dev-shm-usage",
    ],
  });
  return Object.assign(browser, {
    async [Symbol.asyncDispose]() {
      await browser.close();
    },
  });
}

/** Records a page's errors: uncaught exceptions and `console.error` messages. */
export class PageProbe {
  readonly errors: string[] = [];
  /** Console errors matching one of these are expected (e.g. a refused connection). */
  readonly allowed: RegExp[] = [];

  constructor(page: Page) {
    page.on("pageerror", (error) => this.errors.push(`pageerror: ${error.stack ?? error}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const text = message.text();
      if (this.allowed.some((pattern) => pattern.test(text))) return;
      this.errors.push(`console.error: ${text}`);
    });
  }
}

/** Saves a screenshot under test-output/ (transitions finished) and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(TEST_OUTPUT_DIR, { recursive: true });
  const path = new URL(name, TEST_OUTPUT_DIR).pathname;
  await page.screenshot({ path, fullPage: false, animations: "disabled" });
  return path;
}

/** Options of {@link tabTo}. */
export interface TabToOptions {
  /** Shift+Tab instead of Tab. */
  readonly backwards?: boolean;
  /** Give up after this many presses. @default 40 */
  readonly maxPresses?: number;
}

/**
 * Moves the focus with the Tab key alone until the element matching `selector` has it, as a
 * keyboard user would.
 *
 * @returns How many presses it took.
 * @throws {Error} When it is not reached within `maxPresses` (it is not in the focus order).
 */
export async function tabTo(
  page: Page,
  selector: string,
  options: TabToOptions = {},
): Promise<number> {
  const max = options.maxPresses ?? 40;
  const target = page.locator(`${selector}:focus`);
  for (let presses = 0; presses <= max; presses++) {
    if (await target.count() > 0) return presses;
    await page.keyboard.press(options.backwards ? "Shift+Tab" : "Tab");
  }
  throw new Error(`${selector} was not reached with ${max} presses of Tab`);
}

/** The focused element's outline (style and width), to check that the focus can be seen. */
export async function focusOutline(page: Page): Promise<{ style: string; width: number }> {
  return await page.evaluate(`(() => {
    const style = getComputedStyle(document.activeElement);
    return { style: style.outlineStyle, width: parseFloat(style.outlineWidth) };
  })()`) as { style: string; width: number };
}
