/**
 * The host application's hooks into runs: `beforeRun` (refuse a chat with the host's own
 * code, or choose the model and system prompt of its run) and `onUsage` (each run's usage,
 * for billing). A hook is the host's code: whatever it does (throw, hang, answer nonsense),
 * the server goes on. A `beforeRun` that fails refuses the chat `unavailable` (nothing is
 * stored; the client retries), logged; an `onUsage` that fails is logged.
 *
 * @module
 */
import type { Clock } from "../_util/clock.ts";
import { errorMessage } from "../_util/log.ts";
import type { Logger } from "../_util/log.ts";
import type { RunStatus, Usage } from "../protocol/mod.ts";

/** What `beforeRun` is told about a chat that was just stored, before its run starts. */
export interface BeforeRunRequest {
  /** The JWT `sub` of the user who sent the chat. */
  readonly userId: string;
  /** The chat's thread (a new one when {@link BeforeRunRequest.newThread}). */
  readonly threadId: string;
  /** The run the chat starts, if the hook lets it. */
  readonly runId: string;
  /** The chat frame's `id` (the client's idempotency key). */
  readonly chatId: string;
  /** The user's message. */
  readonly text: string;
  /** True when the chat starts a new thread. */
  readonly newThread: boolean;
  /** Aborted when the hook's time is up; the chat is then refused `unavailable`. */
  readonly signal: AbortSignal;
}

/** Lets the run start, with this model and system prompt (the agent's defaults when absent). */
export interface RunChoice {
  /** Given to the agent as `request.model` (at most 256 characters). */
  readonly model?: string;
  /** Given to the agent as `request.systemPrompt` (at most 100000 characters). */
  readonly systemPrompt?: string;
  /** Never set: lets `cond ? { refuse } : {}` type-check. */
  readonly refuse?: undefined;
}

/** Refuses the chat: it answers an `error` frame with code `refused` and nothing is kept. */
export interface RunRefusal {
  readonly refuse: {
    /** The host's own reason, snake_case (`budget_exceeded`): the error frame's `refusal`. */
    readonly code: string;
    /** For the user (at most 500 characters). @default "The chat was refused" */
    readonly message?: string;
  };
}

/** What `beforeRun` answers: nothing (go on as configured), a choice, or a refusal. */
export type BeforeRunDecision = RunChoice | RunRefusal | undefined | void;

/** Called once per new chat, after its checks passed and before its run starts. */
export type BeforeRunHook = (
  request: BeforeRunRequest,
) => BeforeRunDecision | Promise<BeforeRunDecision>;

/** A run's usage, reported once when the run ended, for billing. */
export interface UsageReport {
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
  /** How the run ended (a failed or cancelled run reports what it used before it stopped). */
  readonly status: Exclude<RunStatus, "running">;
  /** Tokens summed over the run's model calls (cached input included in `inputTokens`). */
  readonly usage: Usage;
  /** The agent's `provider` label (`openai-compatible`, `anthropic`, ... or `custom`). */
  readonly provider: string;
}

/** Told each run's usage; what it returns or throws never affects the run. */
export type UsageHook = (report: UsageReport) => void | Promise<void>;

/** The host application's hooks. */
export interface RunHooks {
  readonly beforeRun?: BeforeRunHook;
  readonly onUsage?: UsageHook;
}

/** How `beforeRun` decided, once checked. */
export type BeforeRunVerdict =
  | { readonly kind: "go"; readonly choice: RunChoice }
  | { readonly kind: "refuse"; readonly code: string; readonly message: string }
  /** It threw, timed out or answered something invalid (already logged). */
  | { readonly kind: "failed"; readonly reason: string };

/** Options of {@link askBeforeRun}. */
export interface AskBeforeRunOptions {
  readonly clock: Clock;
  readonly log: Logger;
  /** How long the hook may take; then its signal aborts and the verdict is `failed`. */
  readonly timeoutMs: number;
}

/** The form of a refusal code: snake_case, as every code of the protocol. */
export const REFUSAL_CODE = /^[a-z][a-z0-9_]{0,63}$/;

const MAX_MODEL_LENGTH = 256;
const MAX_SYSTEM_PROMPT_LENGTH = 100_000;
const MAX_REFUSAL_MESSAGE_LENGTH = 500;

/**
 * Asks `beforeRun` about a chat, within a deadline, and checks what it answered.
 *
 * @param hook The host's hook.
 * @param request The chat (the signal is added here).
 * @param options The clock that measures the deadline, and the log for failures.
 * @returns The verdict; never rejects.
 */
export async function askBeforeRun(
  hook: BeforeRunHook,
  request: Omit<BeforeRunRequest, "signal">,
  options: AskBeforeRunOptions,
): Promise<BeforeRunVerdict> {
  const controller = new AbortController();
  const timedOut = Promise.withResolvers<BeforeRunVerdict>();
  const timer = options.clock.setTimer(() => {
    controller.abort(new DOMException("beforeRun took too long", "TimeoutError"));
    timedOut.resolve({
      kind: "failed",
      reason: `beforeRun did not answer within ${options.timeoutMs} ms`,
    });
  }, options.timeoutMs);
  const answered = (async (): Promise<BeforeRunVerdict> => {
    try {
      return checkDecision(await hook({ ...request, signal: controller.signal }));
    } catch (error) {
      return { kind: "failed", reason: `beforeRun threw: ${errorMessage(error)}` };
    }
  })();
  const verdict = await Promise.race([answered, timedOut.promise]);
  timer.cancel();
  if (verdict.kind === "failed") {
    options.log.error("beforeRun failed; the chat is refused", {
      runId: request.runId,
      userId: request.userId,
      reason: verdict.reason,
    });
  }
  return verdict;
}

/**
 * Tells `onUsage` a run's usage without waiting for it; a throw or a rejection is logged.
 *
 * @param hook The host's hook.
 * @param report The run's usage.
 * @param log Where a failure goes.
 */
export function reportUsage(hook: UsageHook, report: UsageReport, log: Logger): void {
  const failed = (error: unknown) =>
    log.error("onUsage failed", { runId: report.runId, error: errorMessage(error) });
  try {
    Promise.resolve(hook(report)).catch(failed);
  } catch (error) {
    failed(error);
  }
}

/** Checks an answer of `beforeRun` against {@link BeforeRunDecision}. */
export function checkDecision(decision: unknown): BeforeRunVerdict {
  if (decision === undefined || decision === null) return { kind: "go", choice: {} };
  if (typeof decision !== "object" || Array.isArray(decision)) {
    return invalid(`expected an object or nothing, received ${describe(decision)}`);
  }
  // A field set to undefined counts as absent, as in JSON.
  const record = Object.fromEntries(
    Object.entries(decision).filter(([, value]) => value !== undefined),
  );
  if ("refuse" in record) {
    const extra = Object.keys(record).filter((key) => key !== "refuse");
    if (extra.length > 0) return invalid(`"refuse" cannot come with "${extra[0]}"`);
    const refuse = record.refuse as Record<string, unknown> | null;
    if (typeof refuse !== "object" || refuse === null) {
      return invalid(`"refuse" must be {code, message?}, received ${describe(refuse)}`);
    }
    const { code, message } = refuse;
    if (typeof code !== "string" || !REFUSAL_CODE.test(code)) {
      return invalid(
        `"refuse.code" must be snake_case (${REFUSAL_CODE}), received ${describe(code)}`,
      );
    }
    if (
      message !== undefined &&
      (typeof message !== "string" || message.length === 0 ||
        message.length > MAX_REFUSAL_MESSAGE_LENGTH)
    ) {
      return invalid(
        `"refuse.message" must be a string of 1 to ${MAX_REFUSAL_MESSAGE_LENGTH} characters`,
      );
    }
    return { kind: "refuse", code, message: message ?? "The chat was refused" };
  }
  const unknown = Object.keys(record).find((key) => key !== "model" && key !== "systemPrompt");
  if (unknown !== undefined) {
    return invalid(`unknown field "${unknown}" (expected model, systemPrompt or refuse)`);
  }
  const { model, systemPrompt } = record;
  if (
    model !== undefined &&
    (typeof model !== "string" || model.length === 0 || model.length > MAX_MODEL_LENGTH)
  ) {
    return invalid(`"model" must be a string of 1 to ${MAX_MODEL_LENGTH} characters`);
  }
  if (
    systemPrompt !== undefined &&
    (typeof systemPrompt !== "string" || systemPrompt.length > MAX_SYSTEM_PROMPT_LENGTH)
  ) {
    return invalid(
      `"systemPrompt" must be a string of at most ${MAX_SYSTEM_PROMPT_LENGTH} characters`,
    );
  }
  return {
    kind: "go",
    choice: {
      ...(model === undefined ? {} : { model }),
      ...(systemPrompt === undefined ? {} : { systemPrompt }),
    },
  };
}

function invalid(why: string): BeforeRunVerdict {
  return { kind: "failed", reason: `beforeRun answered an invalid decision: ${why}` };
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 80));
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}
