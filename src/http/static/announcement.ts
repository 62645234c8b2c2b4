/**
 * What a screen reader hears of a run: one short sentence for each milestone a person waits
 * for (the reply began, a tool runs or needs approval, the reply ended), nothing for each piece
 * of text (the reply itself is there to read). The client library decides which event marks
 * which milestone (`milestoneOf`); this page only words them, in one `switch` over the
 * milestones, so a new kind does not compile until it is worded here.
 *
 * @module
 */
import { milestoneOf } from "../../client/mod.ts";
import type { RunMilestone } from "../../client/mod.ts";
import type { RunEvent } from "../../protocol/mod.ts";
import { failureText } from "./failure_text.ts";

/**
 * The sentence to announce for one run event.
 *
 * @returns It, or `undefined` for an event that needs no announcement.
 */
export function announcementFor(event: RunEvent): string | undefined {
  const milestone = milestoneOf(event);
  return milestone && sentenceFor(milestone);
}

/** The sentence for one milestone. */
export function sentenceFor(milestone: RunMilestone): string {
  switch (milestone.kind) {
    case "started":
      return "The agent is replying.";
    case "approval_needed":
      return `The tool ${milestone.tool} needs your approval.`;
    case "approval_decided": {
      const { tool, approved, by } = milestone;
      if (approved) return `The tool ${tool} was approved.`;
      return by === "user" ? `The tool ${tool} was denied.` : `The tool ${tool} was not approved.`;
    }
    case "tool_running":
      return `Running the tool ${milestone.tool}.`;
    case "tool_failed":
      return `The tool ${milestone.tool} failed.`;
    case "completed":
      return "The reply is complete.";
    case "failed":
      return `The reply failed. ${
        failureText("failed", milestone.error.code, { retryAfterMs: milestone.error.retryAfterMs })
      }`;
    case "cancelled":
      return "The reply was stopped.";
    default: {
      const unknown: never = milestone;
      return unknown;
    }
  }
}
