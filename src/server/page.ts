/**
 * The chat page served at `GET /` and the static files it loads, read from `src/http/static`
 * (bundled by `deno compile --include src/http/static`).
 *
 * @module
 */

/** The page and its files. */
export interface Page {
  readonly html: string;
  readonly files: ReadonlyMap<string, { body: string; type: string }>;
}

const STATIC_DIR = new URL("../http/static/", import.meta.url);

/** Reads the page and its files once, at start. */
export async function loadPage(): Promise<Page> {
  const html = await Deno.readTextFile(new URL("index.html", STATIC_DIR));
  const files = new Map<string, { body: string; type: string }>();
  return { html, files };
}
