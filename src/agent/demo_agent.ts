/**
 * The embedded demo agent (SPEC §4): it thinks, calls one tool (`calculator` when the message
 * holds an integer arithmetic expression, `echo` otherwise) and replies. Its pacing is
 * configurable so tests can stretch a run or make it instant.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import type { Agent, AgentInput, AgentStep } from "./agent.ts";
import { evaluateExpression, findExpression } from "./calculator.ts";

/** Options of {@link DemoAgent}. */
export interface DemoAgentOptions {
  readonly clock: Clock;
  /** Pause before each step, in ms (0: as fast as the server can publish). @default 250 */
  readonly stepDelayMs?: number;
  /** How many `agent_thinking` events a run emits. @default 1 */
  readonly thinkingSteps?: number;
}

/** The demo agent. */
export class DemoAgent implements Agent {
  #clock: Clock;
  #stepDelayMs: number;
  #thinkingSteps: number;

  constructor(options: DemoAgentOptions) {
    this.#clock = options.clock;
    this.#stepDelayMs = options.stepDelayMs ?? 250;
    this.#thinkingSteps = Math.max(1, options.thinkingSteps ?? 1);
  }

  async *run(input: AgentInput, options: { signal: AbortSignal }): AsyncIterable<AgentStep> {
    const pause = () => this.#pause(options.signal);
    const expression = findExpression(input.text);
    for (let i = 1; i <= this.#thinkingSteps; i++) {
      await pause();
      yield {
        kind: "thinking",
        text: this.#thinkingSteps === 1
          ? (expression
            ? "This looks like arithmetic; using the calculator."
            : "Reading your message.")
          : `Thinking (${i}/${this.#thinkingSteps})`,
      };
    }
    const toolCallId = `call_${input.runId.slice(0, 8)}_1`;
    await pause();
    if (expression !== null) {
      yield { kind: "tool_call", toolCallId, tool: "calculator", input: { expression } };
      await pause();
      const result = evaluateExpression(expression);
      yield {
        kind: "tool_result",
        toolCallId,
        output: result.ok ? { value: result.value } : { error: result.error },
      };
      await pause();
      yield {
        kind: "reply",
        text: result.ok
          ? `${expression} = ${result.value}`
          : `I could not compute ${expression}: ${result.error}.`,
      };
      return;
    }
    yield { kind: "tool_call", toolCallId, tool: "echo", input: { text: input.text } };
    await pause();
    yield { kind: "tool_result", toolCallId, output: { text: input.text } };
    await pause();
    yield { kind: "reply", text: `You said: ${input.text}` };
  }

  async #pause(signal: AbortSignal): Promise<void> {
    if (this.#stepDelayMs > 0) await delay(this.#clock, this.#stepDelayMs, { signal });
    else signal.throwIfAborted();
  }
}
