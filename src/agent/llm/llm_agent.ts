/**
 * The model-backed agent (docs/protocol.md#agents-and-tools): one AI SDK `streamLanguageModelCall` per
 * model call, with our own loop around it: the model's tool calls run through the run's tool
 * handle (concurrently), their results go back as tool messages, for at most `maxSteps` calls.
 * The SDK's own retries and multi-step loop are off: a call is retried here, at most twice and
 * only while it has yielded nothing, honouring `Retry-After` up to 30 s.
 *
 * @module
 */
import type { AssistantContent, LanguageModel, ModelMessage, ToolContent, ToolSet } from "ai";
import type { Agent, AgentRequest, AgentStep, ToolCallResult, ToolSpec } from "../agent.ts";
import { type Clock, delay, systemClock } from "../../_util/clock.ts";
import type { Logger } from "../../_util/log.ts";
import { buildContext } from "./build_context.ts";
import { IdleWatch } from "./idle_watch.ts";
import type { LlmSettings } from "./llm_settings.ts";
import { classifyModelError, cleanMessage, type ModelFailure } from "./model_failure.ts";

/** Retries of one model call at most (after its first attempt). */
export const MAX_MODEL_CALL_RETRIES = 2;

/** The longest `Retry-After` waited for; a longer one fails the run at once. */
export const MAX_RETRY_AFTER_MS = 30_000;

/** Options of {@link createLlmAgent}. */
export interface LlmAgentOptions {
  /** Timers of the idle timeout and of the backoff. @default systemClock */
  readonly clock?: Clock;
  /** The HTTP client under the provider. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /** The first backoff of a retry the provider gave no `Retry-After` for; the second is twice
   *  as long, each with up to half of it taken off at random. @default 1000 */
  readonly retryBaseDelayMs?: number;
  /** Waits before a retry; rejects when `signal` aborts. @default a timer on `clock` */
  readonly wait?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Where retries and SDK warnings are logged (never with the key). */
  readonly log?: Logger;
  /** Load the AI SDK now rather than at the first run. @default true */
  readonly preload?: boolean;
}

/**
 * Creates the model-backed agent.
 *
 * @param settings Provider, model and limits (from `LLM_*`, see `loadConfig()`).
 * @returns An agent that streams the model's reply, reasoning, tool calls and usage as steps.
 */
export function createLlmAgent(settings: LlmSettings, options: LlmAgentOptions = {}): Agent {
  return new LlmAgent(settings, options);
}

/** The HTTP client the providers take. */
type FetchFunction = typeof globalThis.fetch;

/** The SDK parts one run needs, loaded on first use (see {@link loadSdk}). */
interface Sdk {
  readonly ai: typeof import("ai");
  /** A language model whose requests go through `fetch`. */
  readonly model: (name: string, fetch: FetchFunction) => LanguageModel;
}

/** How one attempt of a model call ended. */
type AttemptOutcome =
  | {
    readonly kind: "done";
    readonly calls: readonly ModelToolCall[];
    readonly reply: AssistantContent;
  }
  | { readonly kind: "failed"; readonly failure: ModelFailure; readonly yielded: boolean }
  | { readonly kind: "cancelled" };

/** A tool call as the model made it. */
interface ModelToolCall {
  readonly toolCallId: string;
  readonly toolName: string;
  /** The parsed input, or the raw text when it was not JSON (the orchestrator refuses it). */
  readonly input: unknown;
}

/** What one run sends to each of its model calls. */
interface CallInput {
  readonly request: AgentRequest;
  readonly model: string;
  readonly instructions?: string;
  readonly messages: readonly ModelMessage[];
  readonly tools?: ToolSet;
}

class LlmAgent implements Agent {
  /** The provider label of the metrics. */
  readonly provider: string;
  readonly #settings: LlmSettings;
  readonly #clock: Clock;
  readonly #fetch: typeof fetch;
  readonly #retryBaseDelayMs: number;
  readonly #wait: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #log: Logger | undefined;
  readonly #secrets: readonly string[];
  #sdk: Promise<Sdk> | undefined;

  constructor(settings: LlmSettings, options: LlmAgentOptions) {
    this.#settings = settings;
    this.#clock = options.clock ?? systemClock;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? 1_000;
    this.#wait = options.wait ?? ((ms, signal) => delay(this.#clock, ms, { signal }));
    this.#log = options.log;
    this.#secrets = secretsOf(settings);
    this.provider = settings.provider;
    // Loading the SDK takes a while (0.4 s on a busy machine): start now, not at the first
    // run, so the first reply is not late. A failed load is tried again by that run.
    if (options.preload ?? true) void this.#loadSdk();
  }

  async *run(request: AgentRequest): AsyncGenerator<AgentStep> {
    const settings = this.#settings;
    const context = buildContext(request.history, request.text, settings);
    if (!context.ok) {
      yield { kind: "failed", code: context.code, message: context.message };
      return;
    }
    const sdk = await this.#loadSdk();
    const messages: ModelMessage[] = context.messages.map((m) => ({
      role: m.role,
      content: m.text,
    }));
    const specs = request.tools.specs;
    const input = {
      request,
      model: request.model ?? settings.model,
      instructions: request.systemPrompt ?? settings.systemPrompt,
      messages,
      tools: specs.length === 0 ? undefined : toolSet(sdk, specs),
    };
    for (let call = 1; call <= settings.maxSteps; call++) {
      if (request.signal.aborted) return;
      yield { kind: "model_call" };
      const outcome = yield* this.#call(sdk, input);
      if (outcome.kind === "cancelled") return;
      if (outcome.kind === "failed") {
        const { code, message, retryAfterMs } = outcome.failure;
        yield {
          kind: "failed",
          code,
          message,
          ...(code === "rate_limited" && retryAfterMs !== undefined ? { retryAfterMs } : {}),
        };
        return;
      }
      if (outcome.calls.length === 0) return;
      if (call === settings.maxSteps) break;
      messages.push({ role: "assistant", content: outcome.reply });
      let results: ToolCallResult[];
      try {
        // Calls may overlap: the orchestrator runs them concurrently.
        results = await Promise.all(
          outcome.calls.map((c) => request.tools.call(c.toolName, c.input)),
        );
      } catch (error) {
        if (request.signal.aborted) return;
        throw error;
      }
      messages.push({ role: "tool", content: toolResults(outcome.calls, results) });
    }
    yield {
      kind: "failed",
      code: "max_steps",
      message:
        `The model still asked for tools after ${settings.maxSteps} model calls, the most a run may make`,
    };
  }

  /** One model call: attempts it, and retries while nothing was yielded and it may help. */
  async *#call(sdk: Sdk, input: CallInput): AsyncGenerator<AgentStep, AttemptOutcome> {
    const { signal } = input.request;
    for (let attempt = 0;; attempt++) {
      const outcome = yield* this.#attempt(sdk, input);
      if (outcome.kind !== "failed") return outcome;
      const { failure } = outcome;
      if (outcome.yielded || !failure.retryable || attempt >= MAX_MODEL_CALL_RETRIES) {
        return outcome;
      }
      const retryAfter = failure.retryAfterMs;
      if (retryAfter !== undefined && retryAfter > MAX_RETRY_AFTER_MS) return outcome;
      const backoff = this.#retryBaseDelayMs * 2 ** attempt;
      const waitMs = retryAfter ?? Math.round(backoff / 2 + Math.random() * backoff / 2);
      this.#log?.info("model call failed, retrying", {
        runId: input.request.runId,
        code: failure.code,
        attempt: attempt + 1,
        waitMs,
      });
      try {
        await this.#wait(waitMs, signal);
      } catch {
        if (signal.aborted) return { kind: "cancelled" };
        throw new Error("The retry wait failed although the run was not cancelled");
      }
    }
  }

  /** One HTTP request to the model, streamed into steps. */
  async *#attempt(sdk: Sdk, input: CallInput): AsyncGenerator<AgentStep, AttemptOutcome> {
    const { request } = input;
    const watch = new IdleWatch(this.#settings.idleTimeoutMs, this.#clock);
    // Aborted when the attempt ends however it ends, so no request outlives it.
    const ended = new AbortController();
    const abortSignal = AbortSignal.any([request.signal, watch.signal, ended.signal]);
    const reply: Exclude<AssistantContent, string> = [];
    const calls: ModelToolCall[] = [];
    let yielded = false;
    let newThought = true;
    let streamError: { error: unknown } | undefined;
    let usage: Extract<AgentStep, { kind: "usage" }> | undefined;
    try {
      // One model call, no SDK-side steps or retries (ours are above). streamLanguageModelCall,
      // not streamText: streamText keeps a second, unread copy of every part and costs some
      // 2.5x the CPU per piece at a hundred concurrent runs (README.md#performance).
      const result = await sdk.ai.experimental_streamLanguageModelCall({
        model: sdk.model(input.model, watch.wrap(this.#fetch)),
        instructions: input.instructions,
        messages: [...input.messages],
        tools: input.tools,
        abortSignal,
      });
      for await (const part of result.stream) {
        switch (part.type) {
          case "reasoning-start":
            newThought = true;
            reply.push({ type: "reasoning", text: "", providerOptions: part.providerMetadata });
            break;
          case "reasoning-delta": {
            const last = reply.at(-1);
            if (last?.type === "reasoning") last.text += part.text;
            else reply.push({ type: "reasoning", text: part.text });
            if (part.text.length === 0) break;
            yield { kind: "thinking", text: part.text, delta: !newThought };
            newThought = false;
            yielded = true;
            break;
          }
          case "reasoning-end": {
            const last = reply.at(-1);
            if (last?.type === "reasoning" && part.providerMetadata !== undefined) {
              last.providerOptions = part.providerMetadata;
            }
            newThought = true;
            break;
          }
          case "text-delta": {
            const last = reply.at(-1);
            if (last?.type === "text") last.text += part.text;
            else reply.push({ type: "text", text: part.text });
            if (part.text.length === 0) break;
            yield { kind: "text", text: part.text };
            yielded = true;
            break;
          }
          case "tool-call":
            calls.push({ toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
            reply.push({
              type: "tool-call",
              toolCallId: part.toolCallId,
              toolName: part.toolName,
              // Providers (Anthropic) accept only an object as a call's input.
              input: typeof part.input === "object" && part.input !== null ? part.input : {},
              providerOptions: part.providerMetadata,
            });
            break;
          case "model-call-end":
            usage = {
              kind: "usage",
              inputTokens: part.usage.inputTokens ?? 0,
              outputTokens: part.usage.outputTokens ?? 0,
              finishReason: part.finishReason,
            };
            break;
          case "error":
            streamError = { error: part.error };
            break;
        }
        if (streamError !== undefined) break;
      }
    } catch (error) {
      streamError ??= { error };
    } finally {
      ended.abort();
      watch.received();
    }
    if (request.signal.aborted) return { kind: "cancelled" };
    if (watch.fired) {
      const message = (watch.signal.reason as Error).message;
      return { kind: "failed", failure: { code: "timeout", message, retryable: false }, yielded };
    }
    if (streamError !== undefined) {
      const failure = classifyModelError(streamError.error, { secrets: this.#secrets });
      return { kind: "failed", failure, yielded };
    }
    if (usage !== undefined) yield usage;
    return { kind: "done", calls, reply };
  }

  #loadSdk(): Promise<Sdk> {
    this.#sdk ??= loadSdk(this.#settings, this.#log);
    const sdk = this.#sdk;
    // A failed load is not cached: the next run tries again.
    sdk.catch(() => {
      if (this.#sdk === sdk) this.#sdk = undefined;
    });
    return sdk;
  }
}

/**
 * Loads the AI SDK and the one provider the settings name. Loaded on first use, not at import:
 * the SDK reads the host name when it loads, and the demo agent and the unit tests never need it.
 */
async function loadSdk(settings: LlmSettings, log: Logger | undefined): Promise<Sdk> {
  const ai = await import("ai");
  const global = globalThis as { AI_SDK_LOG_WARNINGS?: unknown };
  // The SDK prints warnings to the console unless told otherwise: log them as one line each.
  global.AI_SDK_LOG_WARNINGS ??= log === undefined ? false : (options: unknown) => {
    log.warn("model provider warning", {
      warnings: cleanMessage(JSON.stringify(options), secretsOf(settings)),
    });
  };
  const { baseUrl, apiKey } = settings;
  switch (settings.provider) {
    case "openai-compatible": {
      const { createOpenAICompatible } = await import("@ai-sdk/openai-compatible");
      return {
        ai,
        model: (name, fetch) =>
          createOpenAICompatible({
            name: "openai-compatible",
            baseURL: baseUrl!,
            apiKey,
            includeUsage: true,
            fetch,
          }).chatModel(name),
      };
    }
    case "openai": {
      const { createOpenAI } = await import("@ai-sdk/openai");
      // Chat Completions (not the Responses API): the same wire format and behaviour as every
      // OpenAI-compatible server, with usage always streamed.
      return {
        ai,
        model: (name, fetch) => createOpenAI({ baseURL: baseUrl, apiKey, fetch }).chat(name),
      };
    }
    case "anthropic": {
      const { createAnthropic } = await import("@ai-sdk/anthropic");
      return {
        ai,
        model: (name, fetch) => createAnthropic({ baseURL: baseUrl, apiKey, fetch })(name),
      };
    }
  }
}

/** What no message may hold: the key, and a password in the base URL. */
function secretsOf(settings: LlmSettings): string[] {
  const secrets = settings.apiKey === undefined ? [] : [settings.apiKey];
  if (settings.baseUrl !== undefined && URL.canParse(settings.baseUrl)) {
    const { password } = new URL(settings.baseUrl);
    if (password !== "") secrets.push(password, decodeURIComponent(password));
  }
  return secrets;
}

/** The run's tools as the SDK declares them to the model; the SDK never runs them. */
function toolSet(sdk: Sdk, specs: readonly ToolSpec[]): ToolSet {
  const tools: ToolSet = {};
  for (const spec of specs) {
    tools[spec.name] = sdk.ai.tool({
      description: spec.description,
      // deno-lint-ignore no-explicit-any
      inputSchema: sdk.ai.jsonSchema(spec.inputSchema as any),
    });
  }
  return tools;
}

/** The tool message: each result's text, as the orchestrator cut it. */
function toolResults(
  calls: readonly ModelToolCall[],
  results: readonly ToolCallResult[],
): ToolContent {
  return calls.map((call, i) => {
    const result = results[i];
    return {
      type: "tool-result",
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      output: result.ok
        ? { type: "text", value: result.text }
        : { type: "error-text", value: result.text },
    };
  });
}
