/**
 * What a screen reader hears of a run: one short sentence for the events a person waits for
 * (the reply began, a tool runs or needs approval, the reply ended), nothing for each piece of
 * text (the reply itself is there to read). One `switch` over every event name of
 * `src/protocol/events.ts`, so a new event does not compile until it is decided here.
 *
 * @module
 */
import type { RunEvent } from "../../protocol/mod.ts";
import { failureText } from "./failure_text.ts";

/**
 * The sentence to announce for one run event.
 *
 * @returns It, or `undefined` for an event that needs no announcement.
 */
export function announcementFor(event: RunEvent): string | undefined {
  switch (event.name) {
    case "agent_started":
      return "The agent is replying.";
    case "agent_thinking":
    case "agent_delta":
      return undefined;
    case "tool_approval_requested":
      return `The tool ${event.data.tool} needs your approval.`;
    case "tool_approval_resolved": {
      const { tool, approved, by } = event.data;
      if (approved) return `The tool ${tool} was approved.`;
      return by === "user" ? `The tool ${tool} was denied.` : `The tool ${tool} was not approved.`;
    }
    case "tool_executing":
      return `Running the tool ${event.data.tool}.`;
    case "tool_completed":
      return event.data.error ? `The tool ${event.data.tool} failed.` : undefined;
    case "agent_completed":
      return "The reply is complete.";
    case "agent_failed":
      return `The reply failed. ${
        failureText("failed", event.data.error.code, {
          retryAfterMs: event.data.error.retryAfterMs,
        })
      }`;
    case "agent_cancelled":
      return "The reply was stopped.";
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}
