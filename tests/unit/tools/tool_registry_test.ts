import assert from "node:assert/strict";
import { ToolRegistry, ToolRegistryError } from "../../../src/tools/mod.ts";
import type { AnyTool } from "../../../src/tools/mod.ts";

const tool = (name: string, extra: Partial<AnyTool> = {}): AnyTool => ({
  name,
  description: `The ${name} tool`,
  inputSchema: {
    type: "object",
    properties: { n: { type: "integer", minimum: 0 } },
    required: ["n"],
    additionalProperties: false,
  },
  execute: ({ n }: { n: number }) => n,
  ...extra,
});

Deno.test("ToolRegistry.validate() accepts matching input and names what does not match", () => {
  const registry = new ToolRegistry([tool("count")]);
  assert.deepEqual(registry.validate("count", { n: 3 }), { ok: true, input: { n: 3 } });
  const wrongType = registry.validate("count", { n: "3" });
  assert.deepEqual(wrongType, {
    ok: false,
    message: 'Input does not match the schema of "count": "n" must be integer',
  });
  assert.equal(registry.validate("count", {}).ok, false);
  assert.equal(registry.validate("count", { n: 1, extra: true }).ok, false);
  assert.deepEqual(registry.validate("count", [1]), {
    ok: false,
    message: "Input must be a JSON object, received an array",
  });
  assert.throws(() => registry.validate("missing", {}), RangeError);
});

Deno.test("ToolRegistry() refuses bad names, repeated names and schemas that are not objects", () => {
  assert.throws(() => new ToolRegistry([tool("has space")]), ToolRegistryError);
  assert.throws(() => new ToolRegistry([tool("x".repeat(65))]), ToolRegistryError);
  assert.throws(() => new ToolRegistry([tool("a"), tool("a")]), /twice/);
  assert.throws(
    () => new ToolRegistry([tool("a", { inputSchema: { type: "string" } })]),
    /must describe an object/,
  );
  assert.throws(
    () => new ToolRegistry([tool("a", { inputSchema: { type: "object", properties: 7 } })]),
    /not a valid JSON Schema/,
  );
});

Deno.test("ToolRegistry() adds approval by name and refuses a name it does not know", () => {
  const registry = new ToolRegistry(
    [tool("read"), tool("write", { requiresApproval: true }), tool("delete")],
    { requireApproval: ["delete"] },
  );
  assert.deepEqual(
    registry.names.map((n) => [n, registry.requiresApproval(n)]),
    [["read", false], ["write", true], ["delete", true]],
  );
  assert.throws(
    () => new ToolRegistry([tool("read")], { requireApproval: ["reed"] }),
    (error: unknown) =>
      error instanceof ToolRegistryError && error.tool === "reed" &&
      /registered: read/.test(error.message),
  );
});

Deno.test("ToolRegistry.specs lists what a model sees, in registration order", () => {
  const registry = new ToolRegistry([tool("b"), tool("a")]);
  assert.deepEqual(registry.specs.map((s) => s.name), ["b", "a"]);
  assert.equal(registry.specs[0].description, "The b tool");
});
