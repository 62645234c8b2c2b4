/**
 * The conversation a model call starts from (docs/protocol.md#agents-and-tools): the thread's
 * earlier turns as text, trimmed to a message count and a token budget by dropping whole
 * oldest turns, roles made to alternate, then the user's message.
 *
 * @module
 */

/** One message of the context (an earlier turn, or the user's message). */
export interface ContextMessage {
  readonly role: "user" | "assistant";
  readonly text: string;
}

/** Limits of {@link buildContext}. */
export interface ContextLimits {
  /** Earlier messages kept at most (the newest). */
  readonly historyMessages: number;
  /** Budget of the whole context in tokens, estimated by {@link estimateTokens}. */
  readonly contextTokens: number;
}

/** The context, or why there is none. */
export type ContextResult =
  | {
    readonly ok: true;
    /** Oldest first; starts with a user message, alternates, ends with the user's message. */
    readonly messages: readonly ContextMessage[];
    /** Earlier turns with text that were left out (count or budget). */
    readonly dropped: number;
  }
  | { readonly ok: false; readonly code: "context_too_long"; readonly message: string };

/**
 * Estimates the tokens of a text as characters / 4, rounded up.
 *
 * @param text The text.
 * @returns The estimate.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/**
 * Builds the messages of a model call from the thread's earlier turns and the user's message.
 *
 * - Only turns with text count: a run that left no text adds no assistant message.
 * - The newest `historyMessages` of them are kept, then whole oldest turns are dropped until
 *   the estimate of all kept texts and the user's message fits `contextTokens`.
 * - The context starts with a user message (an assistant turn whose question was dropped goes
 *   too), and consecutive messages of one role are joined by a blank line, so roles always
 *   alternate; a user turn left unanswered is joined to the user's message.
 *
 * @param history The thread's earlier turns, oldest first (anything with `role` and `text`).
 * @param text The user's message.
 * @param limits The message count and the token budget.
 * @returns The messages, or `context_too_long` when the user's message alone exceeds the budget.
 */
export function buildContext(
  history: readonly ContextMessage[],
  text: string,
  limits: ContextLimits,
): ContextResult {
  const own = estimateTokens(text);
  if (own > limits.contextTokens) {
    return {
      ok: false,
      code: "context_too_long",
      message:
        `The message is about ${own} tokens, more than the context budget of ${limits.contextTokens}`,
    };
  }
  const withText = history.filter((turn) => turn.text.trim().length > 0);
  let kept = limits.historyMessages > 0 ? withText.slice(-limits.historyMessages) : [];
  let chars = kept.reduce((sum, turn) => sum + turn.text.length, text.length);
  let first = 0;
  while (first < kept.length && Math.ceil(chars / 4) > limits.contextTokens) {
    chars -= kept[first].text.length;
    first++;
  }
  kept = kept.slice(first);
  while (kept.length > 0 && kept[0].role !== "user") kept = kept.slice(1);

  const messages: ContextMessage[] = [];
  for (const turn of [...kept, { role: "user" as const, text }]) {
    const last = messages.at(-1);
    if (last?.role === turn.role) {
      messages[messages.length - 1] = { role: turn.role, text: `${last.text}\n\n${turn.text}` };
    } else {
      messages.push({ role: turn.role, text: turn.text });
    }
  }
  return { ok: true, messages, dropped: withText.length - kept.length };
}
