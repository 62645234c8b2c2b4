/**
 * The embedded demo agent (`docs/protocol.md#agents-and-tools`): it thinks, calls one tool
 * (`calculator` when the message holds an integer arithmetic expression, `echo` otherwise)
 * through the orchestrator, and replies in one piece. It needs no network. Its pacing is
 * configurable so tests can stretch a run or make it instant.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import type { Agent, AgentRequest, AgentStep } from "./agent.ts";
import { findExpression } from "./calculator.ts";

/** Options of {@link DemoAgent}. */
export interface DemoAgentOptions {
  readonly clock: Clock;
  /** Pause before each step, in ms (0: as fast as the server can publish). @default 250 */
  readonly stepDelayMs?: number;
  /** How many `agent_thinking` events a run emits. @default 1 */
  readonly thinkingSteps?: number;
}

/** The demo agent: a calculator or an echo, and a reply that says what the tool gave. */
export class DemoAgent implements Agent {
  /** Shown as the `provider` label of run metrics. */
  readonly provider = "demo";
  #clock: Clock;
  #stepDelayMs: number;
  #thinkingSteps: number;

  constructor(options: DemoAgentOptions) {
    this.#clock = options.clock;
    this.#stepDelayMs = options.stepDelayMs ?? 250;
    this.#thinkingSteps = Math.max(1, options.thinkingSteps ?? 1);
  }

  async *run(request: AgentRequest): AsyncIterable<AgentStep> {
    const pause = () => this.#pause(request.signal);
    const expression = findExpression(request.text);
    for (let i = 1; i <= this.#thinkingSteps; i++) {
      await pause();
      yield {
        kind: "thinking",
        delta: false,
        text: this.#thinkingSteps === 1
          ? (expression
            ? "This looks like arithmetic; using the calculator."
            : "Reading your message.")
          : `Thinking (${i}/${this.#thinkingSteps})`,
      };
    }
    await pause();
    const tool = expression === null ? "echo" : "calculator";
    const result = await request.tools.call(
      tool,
      expression === null ? { text: request.text } : { expression },
    );
    await pause();
    if (!result.ok) {
      yield { kind: "reply", text: `I could not use the ${tool}: ${result.error.message}.` };
    } else if (expression !== null) {
      const value = (result.output as { value?: unknown } | null)?.value;
      yield { kind: "reply", text: `${expression} = ${String(value)}` };
    } else {
      yield { kind: "reply", text: `You said: ${request.text}` };
    }
  }

  async #pause(signal: AbortSignal): Promise<void> {
    if (this.#stepDelayMs > 0) await delay(this.#clock, this.#stepDelayMs, { signal });
    else signal.throwIfAborted();
  }
}
