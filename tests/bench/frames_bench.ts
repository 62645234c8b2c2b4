/**
 * Frame parse and serialise: `parseClientFrame` on the frames a client sends most, and the
 * JSON of the frames the server sends most.
 *
 * @module
 */
import { parseClientFrame } from "../../src/protocol/mod.ts";
import type { EventFrame, ReadyFrame } from "../../src/protocol/mod.ts";

const TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
  "eyJzdWIiOiJ1c2VyLTEyMzQ1IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMTQ0MDB9." +
  "c2lnbmF0dXJlLW9mLXRoaXJ0eS10d28tYnl0ZXMtYmFzZTY0dXJs";
const HELLO = JSON.stringify({ type: "hello", token: TOKEN });
const CHAT = JSON.stringify({
  type: "chat",
  id: "c-0f8e3a52-6c3b-4d55-8d0e-4a1f5b2a9c11",
  threadId: "t-4b0e1f0a-2d5c-4f87-9a34-1e6b7c8d9e0f",
  text: "what is 2+3*4",
});
const PING = '{"type":"ping"}';

const EVENT: EventFrame = {
  type: "event",
  seq: 1234,
  threadId: "t-4b0e1f0a-2d5c-4f87-9a34-1e6b7c8d9e0f",
  runId: "r-9c8b7a65-4321-4fed-8cba-0987654321ab",
  name: "agent_thinking",
  data: { text: "Thinking (12/100)" },
  ts: "2025-01-01T12:00:00.000Z",
};
const READY: ReadyFrame = {
  type: "ready",
  connectionId: "5d7c1c1e-9f43-4a0e-bb43-0a1b2c3d4e5f",
  userId: "user-12345",
  epoch: "mAbCdEfGhIjKlMnOp",
  seq: 0,
  resumed: false,
  activeRuns: [],
};

let sink: unknown;

Deno.bench("parseClientFrame() hello with token", { group: "parse" }, () => {
  sink = parseClientFrame(HELLO);
});
Deno.bench("parseClientFrame() chat", { group: "parse" }, () => {
  sink = parseClientFrame(CHAT);
});
Deno.bench("parseClientFrame() ping", { group: "parse" }, () => {
  sink = parseClientFrame(PING);
});
Deno.bench("serialise an event frame (build + JSON.stringify)", { group: "serialise" }, () => {
  const frame: EventFrame = {
    type: "event",
    seq: EVENT.seq,
    threadId: EVENT.threadId,
    runId: EVENT.runId,
    name: EVENT.name,
    data: EVENT.data,
    ts: EVENT.ts,
  };
  sink = JSON.stringify(frame);
});
Deno.bench("serialise the ready frame", { group: "serialise" }, () => {
  sink = JSON.stringify(READY);
});

globalThis.addEventListener("unload", () => {
  if (sink === null) console.log(sink);
});
