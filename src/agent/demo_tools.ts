/**
 * The demo agent's two tools, `calculator` and `echo`: tools like any other, run by the
 * orchestrator (so `TOOLS_REQUIRE_APPROVAL=calculator` puts a person in the loop even for the
 * demo). Their work takes the demo's step delay, so tests can catch a call in flight.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import type { Tool } from "../tools/mod.ts";
import { evaluateExpression } from "./calculator.ts";

/** Options of {@link createDemoTools}. */
export interface DemoToolsOptions {
  readonly clock: Clock;
  /** How long each call works, in ms (0: at once). @default 0 */
  readonly workMs?: number;
}

/**
 * Builds the demo tools.
 *
 * @returns `calculator` (exact integer arithmetic; throws on a bad expression) and `echo`.
 */
export function createDemoTools(options: DemoToolsOptions): [
  Tool<{ expression: string }>,
  Tool<{ text: string }>,
] {
  const work = async (signal: AbortSignal) => {
    if ((options.workMs ?? 0) > 0) await delay(options.clock, options.workMs!, { signal });
    else signal.throwIfAborted();
  };
  return [
    {
      name: "calculator",
      description: "Evaluates an integer arithmetic expression with + - * / and parentheses.",
      inputSchema: {
        type: "object",
        properties: { expression: { type: "string", minLength: 1, maxLength: 200 } },
        required: ["expression"],
        additionalProperties: false,
      },
      async execute({ expression }, { signal }) {
        await work(signal);
        const result = evaluateExpression(expression);
        if (!result.ok) throw new RangeError(`Cannot evaluate "${expression}": ${result.error}`);
        return { value: result.value };
      },
    },
    {
      name: "echo",
      description: "Repeats the given text.",
      inputSchema: {
        type: "object",
        properties: { text: { type: "string" } },
        required: ["text"],
        additionalProperties: false,
      },
      async execute({ text }, { signal }) {
        await work(signal);
        return { text };
      },
    },
  ];
}
