import assert from "node:assert/strict";
import {
  MODULE_PREFIX,
  PAGE_ENTRY,
  rewriteImports,
  transpileModuleGraph,
} from "../../../src/server/page.ts";

Deno.test("transpileModuleGraph() serves the page script and every module it imports, as JS", async () => {
  const modules = await transpileModuleGraph(PAGE_ENTRY);
  for (
    const path of [
      "/js/http/static/chat_page.js",
      "/js/client/mod.js",
      "/js/client/agent_socket_client.js",
      "/js/protocol/mod.js",
      "/js/protocol/frames.js",
    ]
  ) {
    assert.ok(modules.has(path), path);
  }
  for (const [path, code] of modules) {
    assert.doesNotMatch(code, /^import type|^export type|^export interface/m, path);
    const statements =
      /^(?:import|export)\s[^;"']*?\bfrom\s*["']([^"']+)["']|^import\s*["']([^"']+)["']/gm;
    for (const match of code.matchAll(statements)) {
      const specifier = match[1] ?? match[2];
      assert.match(specifier, /^\.{1,2}\/.*\.js$/, `${path} imports ${specifier}`);
      const target = new URL(specifier, `http://page${path}`).pathname;
      assert.ok(target.startsWith(MODULE_PREFIX) && modules.has(target), `${path} → ${target}`);
    }
  }
});

Deno.test("rewriteImports() rewrites import and export statements, not comments or strings", () => {
  const code = [
    `import { a,`,
    `  b } from "./a.ts";`,
    `import * as c from '../c.ts';`,
    `import "./side.ts";`,
    `export * from "./d.ts";`,
    `export { e as f } from "./e.ts";`,
    ` * import { x } from "./doc.ts";`,
    `const s = 'from "./str.ts"';`,
    `export const g = "./g.ts";`,
  ].join("\n");
  const seen: string[] = [];
  const out = rewriteImports(code, (s) => {
    seen.push(s);
    return s.replace(/\.ts$/, ".js");
  });
  assert.deepEqual(seen, ["./a.ts", "../c.ts", "./side.ts", "./d.ts", "./e.ts"]);
  assert.match(out, /b \} from "\.\/a\.js";/);
  assert.match(out, /from "\.\/doc\.ts"/);
  assert.match(out, /export const g = "\.\/g\.ts";/);
});

Deno.test("transpileModuleGraph() refuses a module a browser could not load", async () => {
  // src/server/page.ts imports the bare specifier "sucrase".
  await assert.rejects(
    () => transpileModuleGraph("server/page.ts"),
    /imports "sucrase": only relative \.ts imports can be served/,
  );
});
