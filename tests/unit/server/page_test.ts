import assert from "node:assert/strict";
import { BASE_PATH_META, loadPage, pageHtmlFor } from "../../../src/server/page.ts";

const HTML = `<!doctype html>
<html>
  <head>
    <link rel="stylesheet" href="/static/chat.css">
    <script type="module" src="/js/http/static/chat_page.js"></script>
  </head>
  <body><header class="bar"></header><a href="https://example.com/x">x</a><img src="//cdn.example/i.png"></body>
</html>`;

Deno.test("pageHtmlFor() prefixes the page's own URLs and names the base path in a meta tag", () => {
  const html = pageHtmlFor(HTML, "/chat");
  assert.match(html, /<head>\n {4}<meta name="agentsocket-base-path" content="\/chat">/);
  assert.match(html, /href="\/chat\/static\/chat\.css"/);
  assert.match(html, /src="\/chat\/js\/http\/static\/chat_page\.js"/);
  assert.match(html, /href="https:\/\/example\.com\/x"/, "absolute URLs stay");
  assert.match(html, /src="\/\/cdn\.example\/i\.png"/, "protocol-relative URLs stay");
  assert.equal(html.match(/agentsocket-base-path/g)?.length, 1, "not in <header> too");
});

Deno.test("pageHtmlFor() at the root leaves the URLs and says the base path is empty", () => {
  const html = pageHtmlFor(HTML, "");
  assert.match(html, new RegExp(`<meta name="${BASE_PATH_META}" content="">`));
  assert.match(html, /href="\/static\/chat\.css"/);
});

Deno.test("loadPage() serves the page's scripts at the same paths whatever the base path", async () => {
  const page = await loadPage({ basePath: "/chat" });
  assert.match(page.html, /src="\/chat\/js\/http\/static\/chat_page\.js"/);
  assert.ok(
    page.files.has("/js/http/static/chat_page.js"),
    "mounted under the base path by the app",
  );
});
