import assert from "node:assert/strict";
import { AgentsocketOptionsError, ConfigError, createAgentsocket, fromEnv } from "../../../mod.ts";
import type { Agent, AgentsocketOptions, Tool } from "../../../mod.ts";
import { loadConfig } from "../../../src/config/mod.ts";
import { resolveOptions } from "../../../src/server/mod.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const loopback = { remoteAddr: { hostname: "127.0.0.1" } };
const quiet = { logLevel: "silent" } as const;

const echoAgent: Agent = {
  async *run({ text }) {
    yield { kind: "reply", text };
  },
};

function optionError(options: unknown): AgentsocketOptionsError {
  try {
    resolveOptions(options as AgentsocketOptions);
  } catch (error) {
    assert.ok(error instanceof AgentsocketOptionsError, `${JSON.stringify(options)}: ${error}`);
    return error;
  }
  assert.fail(`no AgentsocketOptionsError for ${JSON.stringify(options)}`);
}

Deno.test("resolveOptions() names the first unknown or bad option in one line", () => {
  const cases: [unknown, string, RegExp][] = [
    [{ basepath: "/chat" }, "basepath", /did you mean "basePath"/],
    [{ limits: { maxFrames: 10 } }, "limits.maxFrames", /is not an option/],
    [{ limits: { maxFrameBytes: 10 } }, "limits.maxFrameBytes", /from 1024 to 16777216/],
    [{ limits: { maxFrameBytes: "65536" } }, "limits.maxFrameBytes", /received "65536"/],
    [{ jwt: { secret: "s".repeat(32), jwksUrl: "https://x/jwks" } }, "jwt.jwksUrl", /jwt\.secret/],
    [{ appEnv: "production" }, "jwt.secret", /appEnv is production/],
    [{ databaseUrl: "mysql://h/db" }, "databaseUrl", /postgres/],
    [{ llm: { baseUrl: "http://127.0.0.1:11434/v1" } }, "llm.model", /llm is llm/],
    [{ llm: { model: "m", provider: "anthropic" } }, "llm.apiKey", /llm\.provider is anthropic/],
    [{ runs: { approvalTimeoutMs: 3_600_000 } }, "runs.approvalTimeoutMs", /retention\.seconds/],
    [{ agent: { respond() {} } }, "agent", /run\(\)/],
    [{ tools: { name: "x" } }, "tools", /list/],
    [{ beforeRun: "refuse" }, "beforeRun", /function/],
    [{ hookTimeoutMs: 60_000 }, "hookTimeoutMs", /10 to 10000/],
    [{ basePath: "chat/" }, "basePath", /leading/],
    [{ basePath: "/chat/" }, "basePath", /trailing/],
    [{ page: "no" }, "page", /true or false/],
    [{ logger: console.log }, "logger", /debug\(\)/],
  ];
  for (const [options, option, why] of cases) {
    const error = optionError(options);
    assert.equal(error.option, option, JSON.stringify(options));
    assert.match(error.message, why);
    assert.ok(error.message.startsWith(`Invalid option: ${option} `));
    assert.ok(!error.message.includes("\n"));
  }
});

Deno.test("resolveOptions() never puts a secret's value in a message", () => {
  const error = optionError({ llm: { model: "m", provider: "openai", apiKey: "sk zebra" } });
  assert.equal(error.option, "llm.apiKey");
  assert.ok(!error.message.includes("zebra"));
  assert.ok(!optionError({ jwt: { secret: "zebra" } }).message.includes("zebra"));
});

Deno.test("fromEnv() gives the settings loadConfig() reads, and the factory builds the same configuration", () => {
  const vars = {
    APP_ENV: "production",
    JWT_SECRET: "x".repeat(32),
    DATABASE_URL: "postgres://db.internal/agentsocket",
    REDIS_URL: "redis://cache.internal",
    MAX_FRAME_BYTES: "32768",
    ALLOWED_ORIGINS: "https://a.example, https://b.example/",
    AGENT: "llm",
    LLM_BASE_URL: "http://127.0.0.1:11434/v1",
    LLM_MODEL: "llama3.2",
    TOOLS_REQUIRE_APPROVAL: "echo",
    DRAIN_TIMEOUT_MS: "5000",
    INSTANCE_ID: "i-1",
    PORT: "9000",
  };
  const settings = fromEnv({ env: env(vars) });
  assert.equal(settings.limits?.maxFrameBytes, 32768);
  assert.equal(settings.llm?.model, "llama3.2");
  assert.equal("port" in settings, false, "where to listen is the application's business");
  const { port: _port, host: _host, testing: _testing, ...fromVariables } = loadConfig(env(vars));
  const { testing: _none, ...fromOptions } = resolveOptions(settings).config;
  assert.deepEqual(fromOptions, fromVariables);
});

Deno.test("fromEnv() names the variable of a bad value", () => {
  for (
    const [vars, variable] of [
      [{ MAX_FRAME_BYTES: "big" }, "MAX_FRAME_BYTES"],
      [{ MAX_FRAME_BYTES: "10" }, "MAX_FRAME_BYTES"],
      [{ LLM_MODEL: "m" }, "AGENT"],
    ] as const
  ) {
    assert.throws(
      () => fromEnv({ env: env(vars) }),
      (error: unknown) => error instanceof ConfigError && error.variable === variable,
    );
  }
});

Deno.test("createAgentsocket() reads nothing from the environment", async () => {
  const envApi = Deno.env as unknown as Record<string, unknown>;
  const saved = { get: envApi.get, has: envApi.has, toObject: envApi.toObject };
  const reads: string[] = [];
  for (const name of Object.keys(saved)) {
    envApi[name] = (key?: string) => {
      reads.push(`${name}(${key ?? ""})`);
      throw new Error("the environment was read");
    };
  }
  try {
    const socket = await createAgentsocket({ ...quiet, agent: echoAgent });
    await socket.start();
    const ready = await socket.fetch(new Request("http://localhost/health/ready"));
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    await socket.drain();
    await socket.close();
  } finally {
    Object.assign(envApi, saved);
  }
  assert.deepEqual(reads, []);
});

Deno.test("createAgentsocket() mounts every route under basePath", async () => {
  const socket = await createAgentsocket({ ...quiet, basePath: "/chat" });
  await socket.start();
  const status = async (path: string, init?: RequestInit) => {
    const response = await socket.fetch(new Request(`http://localhost${path}`, init), loopback);
    const body = await response.text();
    return { status: response.status, body };
  };
  assert.equal((await status("/chat/health/live")).status, 200);
  assert.equal((await status("/chat/metrics")).status, 200);
  assert.equal((await status("/chat/api/threads")).status, 401);
  assert.equal((await status("/chat/ws")).status, 426, "the upgrade route answers a plain GET");
  for (const outside of ["/health/live", "/ws", "/api/threads", "/"]) {
    assert.equal((await status(outside)).status, 404, outside);
  }
  const html = await status("/chat/");
  assert.equal(html.status, 200);
  // The page's URLs are relative to it: served at /chat/, they resolve under /chat/.
  const script = /<script type="module" src="([^"]+)"/.exec(html.body)?.[1];
  const scriptUrl = new URL(script ?? "missing", "http://localhost/chat/");
  assert.equal((await status(scriptUrl.pathname)).status, 200, scriptUrl.pathname);
  const bare = await socket.fetch(new Request("http://localhost/chat"), loopback);
  assert.deepEqual([bare.status, bare.headers.get("location")], [308, "/chat/"]);
  const token = await status("/chat/auth/dev-token", {
    method: "POST",
    body: JSON.stringify({ userId: "alice" }),
  });
  assert.equal(token.status, 200);
  const threads = await socket.fetch(
    new Request("http://localhost/chat/api/threads", {
      headers: { authorization: `Bearer ${JSON.parse(token.body).token}` },
    }),
  );
  assert.deepEqual(await threads.json(), { threads: [] });
  await socket.drain();
  await socket.close();
});

Deno.test("createAgentsocket() leaves the page and the dev-token route out when told to", async () => {
  const socket = await createAgentsocket({ ...quiet, page: false, devTokens: false });
  await socket.start();
  for (
    const [path, method] of [
      ["/", "GET"],
      ["/js/http/static/chat_page.js", "GET"],
      ["/auth/dev-token", "POST"],
    ]
  ) {
    const response = await socket.fetch(
      new Request(`http://localhost${path}`, { method, body: method === "POST" ? "{}" : null }),
      loopback,
    );
    assert.equal(response.status, 404, path);
    await response.body?.cancel();
  }
  await socket.drain();
  await socket.close();
});

Deno.test("createAgentsocket() refuses a bad tool or an approval name no tool has", async () => {
  const refund: Tool<{ orderId: string }> = {
    name: "refund_order",
    description: "Refunds an order.",
    inputSchema: { type: "object", properties: { orderId: { type: "string" } } },
    execute: ({ orderId }) => ({ refunded: orderId }),
  };
  const cases: [AgentsocketOptions, string, RegExp][] = [
    [{ agent: echoAgent, tools: [{ ...refund, name: "refund order" }] }, "tools", /name/],
    [{ agent: echoAgent, tools: [refund, refund] }, "tools", /twice/],
    [
      { agent: echoAgent, tools: [{ ...refund, inputSchema: { type: "string" } }] },
      "tools",
      /object/,
    ],
    [
      { agent: echoAgent, tools: [refund], toolsRequireApproval: ["calculator"] },
      "toolsRequireApproval",
      /"calculator".*registered: refund_order/,
    ],
  ];
  for (const [options, option, why] of cases) {
    await assert.rejects(
      createAgentsocket({ ...quiet, ...options }),
      (error: unknown) =>
        error instanceof AgentsocketOptionsError && error.option === option &&
        why.test(error.message),
    );
  }
});

Deno.test("fromEnv() is the only reader of the environment in the package's code", async () => {
  const root = new URL("../../../", import.meta.url);
  const readers: string[] = [];
  const scan = async (dir: URL, prefix: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${prefix}${entry.name}`;
      if (entry.isDirectory) await scan(new URL(`${entry.name}/`, dir), `${path}/`);
      else if (entry.name.endsWith(".ts")) {
        const code = (await Deno.readTextFile(new URL(entry.name, dir)))
          .split("\n")
          .filter((line) => !/^\s*(\*|\/\/|\/\*)/.test(line)); // doc comments may show examples
        if (code.some((line) => /\bDeno\.env\b|\bprocess\.env\b/.test(line))) readers.push(path);
      }
    }
  };
  await scan(new URL("src/", root), "src/");
  for (const file of ["mod.ts", "main.ts"]) {
    if (/\bDeno\.env\b/.test(await Deno.readTextFile(new URL(file, root)))) readers.push(file);
  }
  assert.deepEqual(readers, ["src/config/from_env.ts"]);
});
