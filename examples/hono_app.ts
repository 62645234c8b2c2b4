/**
 * agentsocket under `/chat` in a hono app, beside the app's own `/`, with a tool that waits for
 * a person's approval. `deno run --allow-net --allow-read examples/hono_app.ts [port]` (no
 * --allow-env), then open http://localhost:8000/chat/.
 * @module
 */
import { Hono } from "hono";
import { createAgentsocket } from "../mod.ts";
import type { Agent, Tool } from "../mod.ts";

/** Refunds an order. Input that does not match the schema never reaches `execute`. */
const refundOrder: Tool<{ orderId: string }> = {
  name: "refund_order",
  description: "Refunds an order in full.",
  inputSchema: {
    type: "object",
    properties: { orderId: { type: "string", pattern: "^A-[0-9]+$" } },
    required: ["orderId"],
    additionalProperties: false,
  },
  requiresApproval: true, // tool_approval_requested, then it waits for an `approve`
  execute: ({ orderId }) => ({ refunded: orderId }),
};

/** Calls refund_order for "refund <order id>", and says how it went. */
const support: Agent = {
  async *run({ text, tools }) {
    const orderId = /refund (\S+)/i.exec(text)?.[1];
    if (orderId === undefined) {
      yield { kind: "reply", text: "Ask me to refund an order, e.g. refund A-1001." };
      return;
    }
    const result = await tools.call("refund_order", { orderId });
    yield { kind: "reply", text: result.ok ? `Refunded ${orderId}.` : `No refund: ${result.text}` };
  },
};

const socket = await createAgentsocket({
  agent: support,
  tools: [refundOrder],
  basePath: "/chat",
  logLevel: "warn",
});
await socket.start();

const app = new Hono<{ Bindings: Deno.ServeHandlerInfo }>();
app.get("/", (c) => c.text("The shop's own home page. The support chat is at /chat/."));
app.all("/chat", (c) => socket.fetch(c.req.raw, c.env));
app.all("/chat/*", (c) => socket.fetch(c.req.raw, c.env)); // WebSocket upgrade included
const server = Deno.serve({
  port: Number(Deno.args[0] ?? 8000),
  onListen: ({ port }) => console.log(`listening on http://localhost:${port}/`),
}, app.fetch);
Deno.addSignalListener("SIGTERM", async () => {
  await socket.drain();
  await server.shutdown();
  await socket.close();
  Deno.exit(0);
});
