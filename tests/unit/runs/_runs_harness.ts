/**
 * An orchestrator on the memory store and engine with a manual clock, a recorder of the
 * user's events, and a scripted agent that the test drives step by step.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createDemoTools, DemoAgent } from "../../../src/agent/mod.ts";
import type { Agent, AgentRequest, AgentStep, ToolCallResult } from "../../../src/agent/mod.ts";
import { MemoryEngine } from "../../../src/bus/mod.ts";
import type { EventEngine, UserEvent } from "../../../src/bus/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { RunOrchestrator } from "../../../src/runs/mod.ts";
import type { RunOrchestratorOptions } from "../../../src/runs/mod.ts";
import { MemoryStore } from "../../../src/store/mod.ts";
import type { ChatStore } from "../../../src/store/mod.ts";
import { ToolRegistry } from "../../../src/tools/mod.ts";
import type { AnyTool } from "../../../src/tools/mod.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

export const alice = { userId: "alice", exp: 4_000_000_000 };

/** A tool whose calls wait until the test releases them. */
export function heldTool(name = "search"): AnyTool & { calls: PromiseWithResolvers<unknown>[] } {
  const calls: PromiseWithResolvers<unknown>[] = [];
  const reached: (() => void)[] = [];
  return {
    name,
    description: "Waits for the test.",
    inputSchema: { type: "object", properties: { q: { type: "string" } }, required: ["q"] },
    calls,
    execute: async (_input: { q: string }, { signal }) => {
      const call = Promise.withResolvers<unknown>();
      calls.push(call);
      reached.splice(0).forEach((r) => r());
      signal.addEventListener("abort", () => call.reject(signal.reason), { once: true });
      return (await call.promise) as never;
    },
  };
}

/**
 * An agent that yields what the test gives it: `next(step)` hands one step over, `call(...)`
 * makes a tool call and resolves with its result, `end()` returns.
 */
type Scripted =
  | { step: AgentStep }
  | { call: [string, unknown]; done: (result: unknown) => void }
  | { end: true };

export class ScriptedAgent implements Agent {
  readonly provider = "scripted";
  #queue: Scripted[] = [];
  #wake?: () => void;
  readonly requests: AgentRequest[] = [];
  readonly started = Promise.withResolvers<AgentRequest>();

  /** True once the agent has taken every step given so far and waits for more. */
  get waiting(): boolean {
    return this.#queue.length === 0 && this.#wake !== undefined;
  }

  next(step: AgentStep): void {
    this.#push({ step });
  }

  call(name: string, input: unknown): Promise<ToolCallResult> {
    return new Promise((done) =>
      this.#push({ call: [name, input], done: (result) => done(result as ToolCallResult) })
    );
  }

  end(): void {
    this.#push({ end: true });
  }

  async *run(request: AgentRequest): AsyncIterable<AgentStep> {
    this.requests.push(request);
    this.started.resolve(request);
    for (;;) {
      while (this.#queue.length === 0) {
        await new Promise<void>((resolve, reject) => {
          this.#wake = () => {
            this.#wake = undefined;
            resolve();
          };
          request.signal.addEventListener("abort", () => reject(request.signal.reason), {
            once: true,
          });
        });
      }
      const item = this.#queue.shift()!;
      if ("end" in item) return;
      if ("step" in item) {
        yield item.step;
        continue;
      }
      request.tools.call(...item.call).then(item.done, (error) => item.done({ error }));
    }
  }

  #push(item: Scripted): void {
    this.#queue.push(item);
    this.#wake?.();
  }
}

/** Builds an orchestrator and records every event of alice. */
export async function setup(
  options: Partial<Omit<RunOrchestratorOptions, "store" | "engine">> & {
    store?: ChatStore;
    engine?: EventEngine;
    extraTools?: AnyTool[];
    clock?: ManualClock;
  } = {},
) {
  const clock = options.clock ?? new ManualClock(Date.now());
  const store = options.store ?? new MemoryStore({ clock });
  const engine = options.engine ??
    new MemoryEngine({ clock, retention: { count: 1000, seconds: 3600 } });
  const orchestrator = new RunOrchestrator({
    agent: new DemoAgent({ clock, stepDelayMs: 0 }),
    clock,
    log: silentLogger,
    instanceId: "i1",
    leaseMs: 1000,
    streamFlushMs: 40,
    ...options,
    tools: options.tools ??
      new ToolRegistry([...createDemoTools({ clock }), ...(options.extraTools ?? [])]),
    store,
    engine,
  });
  const events: UserEvent[] = [];
  const subscription = await engine.subscribe("alice", (event) => events.push(event));
  return {
    clock,
    store,
    engine,
    orchestrator,
    events,
    names: () => events.map((e) => e.name),
    async dispose() {
      subscription.unsubscribe();
      await orchestrator.stop();
    },
  };
}

/** Lets queued promise jobs and zero-delay timers run until `condition` holds. */
export async function until(condition: () => boolean, what = "condition"): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(condition(), `${what} not met`);
}
