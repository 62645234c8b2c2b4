/**
 * What the model-backed agent is configured with: the provider, the model and the limits of
 * one run (docs/protocol.md#agents-and-tools).
 *
 * @module
 */

/** The providers the model agent speaks to, through the AI SDK. */
export const LLM_PROVIDERS = ["openai-compatible", "openai", "anthropic"] as const;

/** One of {@link LLM_PROVIDERS}. */
export type LlmProvider = typeof LLM_PROVIDERS[number];

/** Settings of {@link createLlmAgent}; `loadConfig()` builds them from the `LLM_*` variables. */
export interface LlmSettings {
  /** @default "openai-compatible" (as `LLM_PROVIDER`) */
  readonly provider: LlmProvider;
  /**
   * The API root. Required for `openai-compatible` (`/v1` included, e.g.
   * `http://127.0.0.1:11434/v1`: requests go to `{baseUrl}/chat/completions`); for `openai`
   * and `anthropic` a proxy in front of the official API (`https://api.openai.com/v1`,
   * `https://api.anthropic.com/v1` when unset).
   */
  readonly baseUrl?: string;
  /** Sent as the provider's credential; never logged, published or put in an error message. */
  readonly apiKey?: string;
  /** The model name, as the provider knows it. */
  readonly model: string;
  /** Sent through the provider's own system field, when set. */
  readonly systemPrompt?: string;
  /** Earlier messages of the thread sent at most. @default 20 */
  readonly historyMessages: number;
  /** Budget of the context, estimated as characters / 4. @default 16000 */
  readonly contextTokens: number;
  /** Model calls one run may make. @default 8 */
  readonly maxSteps: number;
  /** How long a request may go without a byte from the model. @default 60000 */
  readonly idleTimeoutMs: number;
}
