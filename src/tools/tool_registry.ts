/**
 * The tools of one server: checked once when registered (names, schemas, which ones need
 * approval), then looked up and validated per call. Input is validated with Ajv, a
 * well-kept JSON Schema library, never by hand.
 *
 * @module
 */
import { Ajv } from "ajv";
import type { ValidateFunction } from "ajv";
import type { ToolSpec } from "../agent/mod.ts";
import type { AnyTool } from "./tool.ts";

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A tool registry could not be built from what it was given. */
export class ToolRegistryError extends Error {
  /** The tool at fault, when one is. */
  readonly tool?: string;
  constructor(message: string, options?: ErrorOptions & { tool?: string }) {
    super(message, options);
    this.name = "ToolRegistryError";
    this.tool = options?.tool;
  }
}

/** The outcome of {@link ToolRegistry.validate}. */
export type ToolInputCheck =
  | { readonly ok: true; readonly input: Record<string, unknown> }
  | { readonly ok: false; readonly message: string };

/** Options of {@link ToolRegistry}. */
export interface ToolRegistryOptions {
  /**
   * Names of registered tools that need approval on top of those marked in code
   * (`TOOLS_REQUIRE_APPROVAL`). It can only add approval.
   * @default []
   */
  readonly requireApproval?: readonly string[];
}

interface Entry {
  readonly tool: AnyTool;
  readonly validate: ValidateFunction;
  readonly requiresApproval: boolean;
}

/**
 * The registered tools.
 *
 * @example Validating a call
 * ```ts
 * import { ToolRegistry } from "./tool_registry.ts";
 *
 * const registry = new ToolRegistry([{
 *   name: "echo",
 *   description: "Repeats a text.",
 *   inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
 *   execute: (input: { text: string }) => ({ text: input.text }),
 * }]);
 * registry.validate("echo", { text: "hi" }); // { ok: true, input: { text: "hi" } }
 * registry.validate("echo", { text: 1 }).ok; // false
 * ```
 */
export class ToolRegistry {
  #entries = new Map<string, Entry>();

  /**
   * @param tools The tools, each name once.
   * @param options Which names need approval besides those marked in code.
   * @throws {ToolRegistryError} for a bad or repeated name, a schema Ajv cannot compile or
   *   that does not describe an object, or an approval name that is not registered.
   */
  constructor(tools: readonly AnyTool[], options: ToolRegistryOptions = {}) {
    const ajv = new Ajv({ allErrors: false, strict: false });
    const extra = new Set(options.requireApproval ?? []);
    for (const tool of tools) {
      if (typeof tool?.name !== "string" || !TOOL_NAME.test(tool.name)) {
        throw new ToolRegistryError(
          `Cannot register tool: "name" must be 1 to 64 letters, digits, "_" or "-", received ${
            JSON.stringify(tool?.name)
          }`,
        );
      }
      if (this.#entries.has(tool.name)) {
        throw new ToolRegistryError(`Cannot register tool "${tool.name}" twice`, {
          tool: tool.name,
        });
      }
      if (typeof tool.execute !== "function") {
        throw new ToolRegistryError(`Cannot register tool "${tool.name}": "execute" is missing`, {
          tool: tool.name,
        });
      }
      if (tool.inputSchema?.type !== "object") {
        throw new ToolRegistryError(
          `Cannot register tool "${tool.name}": "inputSchema" must describe an object ({"type":"object",...})`,
          { tool: tool.name },
        );
      }
      let validate: ValidateFunction;
      try {
        validate = ajv.compile(tool.inputSchema);
      } catch (error) {
        throw new ToolRegistryError(
          `Cannot register tool "${tool.name}": "inputSchema" is not a valid JSON Schema: ${
            (error as Error).message
          }`,
          { tool: tool.name, cause: error },
        );
      }
      this.#entries.set(tool.name, {
        tool,
        validate,
        requiresApproval: tool.requiresApproval === true || extra.has(tool.name),
      });
    }
    for (const name of extra) {
      if (!this.#entries.has(name)) {
        throw new ToolRegistryError(
          `Cannot require approval for "${name}": no tool of that name is registered (registered: ${
            [...this.#entries.keys()].join(", ") || "none"
          })`,
          { tool: name },
        );
      }
    }
  }

  /** The tools as a model sees them, in registration order. */
  get specs(): ToolSpec[] {
    return [...this.#entries.values()].map(({ tool }) => ({
      name: tool.name,
      description: tool.description,
      inputSchema: tool.inputSchema,
    }));
  }

  /** The registered names, in registration order. */
  get names(): string[] {
    return [...this.#entries.keys()];
  }

  /** The tool of that name, or undefined. */
  get(name: string): AnyTool | undefined {
    return this.#entries.get(name)?.tool;
  }

  /** Whether calls of `name` wait for a person's approval. */
  requiresApproval(name: string): boolean {
    return this.#entries.get(name)?.requiresApproval ?? false;
  }

  /**
   * Checks a call's input against the tool's schema.
   *
   * @returns The input, or a message naming what does not match.
   * @throws {RangeError} when no tool of that name is registered.
   */
  validate(name: string, input: unknown): ToolInputCheck {
    const entry = this.#entries.get(name);
    if (!entry) throw new RangeError(`Cannot validate input: no tool named "${name}"`);
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      return { ok: false, message: `Input must be a JSON object, received ${describe(input)}` };
    }
    if (entry.validate(input)) return { ok: true, input: input as Record<string, unknown> };
    const error = entry.validate.errors?.[0];
    const where = error?.instancePath ? `"${error.instancePath.slice(1)}"` : "input";
    return {
      ok: false,
      message: `Input does not match the schema of "${name}": ${where} ${
        error?.message ?? "is invalid"
      }`,
    };
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}
