/**
 * The chat page served at `GET /` and the files it loads. Browsers cannot run TypeScript, so
 * at start the server transpiles the page script and every module it imports (the client
 * library, the protocol) with sucrase — types stripped, nothing else changed — and rewrites
 * their `.ts` import specifiers to the served `.js` paths: `src/<path>.ts` is served at
 * `/js/<path>.js`. No build step; `deno compile` needs `--include` for `src/http/static`,
 * `src/client` and `src/protocol`, which are read as files.
 *
 * @module
 */
import { transform } from "sucrase";

/** The page and its files. */
export interface Page {
  readonly html: string;
  readonly files: ReadonlyMap<string, { body: string; type: string }>;
}

/** The URL prefix of the transpiled modules. */
export const MODULE_PREFIX = "/js/";

/** The page script, relative to `src/`. */
export const PAGE_ENTRY = "http/static/chat_page.ts";

const SRC_DIR = new URL("../", import.meta.url);
const STATIC_DIR = new URL("../http/static/", import.meta.url);
const JS_TYPE = "text/javascript; charset=utf-8";
const ASSETS: Record<string, string> = { "chat.css": "text/css; charset=utf-8" };
const MAX_MODULES = 100;

/**
 * Reads the page and its files once, at start.
 *
 * @throws {Error} When a file is missing or a module imports what a browser cannot load.
 */
export async function loadPage(): Promise<Page> {
  const html = await Deno.readTextFile(new URL("index.html", STATIC_DIR));
  const files = new Map<string, { body: string; type: string }>();
  for (const [name, type] of Object.entries(ASSETS)) {
    files.set(`/static/${name}`, {
      body: await Deno.readTextFile(new URL(name, STATIC_DIR)),
      type,
    });
  }
  for (const [path, body] of await transpileModuleGraph(PAGE_ENTRY)) {
    files.set(path, { body, type: JS_TYPE });
  }
  return { html, files };
}

/**
 * Transpiles `entry` and every module it imports, following relative specifiers only.
 *
 * @param entry A `.ts` file, relative to `root`.
 * @param options `root`: the folder served at {@link MODULE_PREFIX} (default `src/`).
 * @returns Served path (`/js/client/mod.js`) → JavaScript.
 * @throws {Error} When a module imports a bare or remote specifier, or leaves `root`: a
 *   browser could not load it, so the server refuses to start rather than serve a broken page.
 */
export async function transpileModuleGraph(
  entry: string,
  options: { root?: URL } = {},
): Promise<Map<string, string>> {
  const root = options.root ?? SRC_DIR;
  const out = new Map<string, string>();
  const queue = [new URL(entry, root)];
  while (queue.length > 0) {
    const url = queue.shift()!;
    const path = servedPath(url, root);
    if (out.has(path)) continue;
    if (out.size >= MAX_MODULES) throw new Error(`Page modules: more than ${MAX_MODULES}`);
    const source = await Deno.readTextFile(url);
    const code = transform(source, {
      transforms: ["typescript"],
      disableESTransforms: true,
      filePath: url.pathname,
    }).code;
    out.set(
      path,
      rewriteImports(code, (specifier) => {
        if (!/^\.{1,2}\//.test(specifier) || !specifier.endsWith(".ts")) {
          throw new Error(
            `Page module ${path} imports "${specifier}": only relative .ts imports can be served`,
          );
        }
        const target = new URL(specifier, url);
        servedPath(target, root); // throws when it leaves the root
        queue.push(target);
        return specifier.replace(/\.ts$/, ".js");
      }),
    );
  }
  return out;
}

/**
 * Rewrites the specifiers of the static `import` / `export … from` statements of a module
 * (each begins a line once transpiled; comments and strings elsewhere are left alone).
 *
 * @param code JavaScript.
 * @param rewrite Maps a specifier to its replacement.
 */
export function rewriteImports(code: string, rewrite: (specifier: string) => string): string {
  const statement =
    /^(import|export)(\s+(?:type\s+)?(?:[\w$*\s{},]*?|\{[^}]*\})\s*from\s*|\s*)(["'])([^"'\n]+)\3/gm;
  return code.replace(
    statement,
    (_match, keyword: string, middle: string, quote: string, specifier: string) =>
      `${keyword}${middle}${quote}${rewrite(specifier)}${quote}`,
  );
}

function servedPath(url: URL, root: URL): string {
  if (!url.href.startsWith(root.href)) {
    throw new Error(`Page module ${url.href} is outside ${root.href}`);
  }
  return MODULE_PREFIX + url.href.slice(root.href.length).replace(/\.ts$/, ".js");
}
