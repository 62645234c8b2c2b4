import assert from "node:assert/strict";
import { evaluateExpression, findExpression } from "../../../src/agent/calculator.ts";

Deno.test("findExpression() finds the arithmetic in a sentence", () => {
  assert.equal(findExpression("what is 2+3*4"), "2+3*4");
  assert.equal(findExpression("what is 6*7?"), "6*7");
  assert.equal(findExpression("compute (1 + 2) * 3 please"), "(1 + 2) * 3");
  assert.equal(findExpression("hello there"), null);
  assert.equal(findExpression("I have 3 cats"), null);
  assert.equal(findExpression("1/0"), "1/0");
});

Deno.test("evaluateExpression() is exact on integers and refuses bad input", () => {
  assert.deepEqual(evaluateExpression("2+3*4"), { ok: true, value: "14" });
  assert.deepEqual(evaluateExpression("(2+3)*4"), { ok: true, value: "20" });
  assert.deepEqual(evaluateExpression("-3 - -4"), { ok: true, value: "1" });
  assert.deepEqual(evaluateExpression("7/2"), { ok: true, value: "3.5" });
  assert.deepEqual(evaluateExpression("1/3"), { ok: true, value: "0.3333333333" });
  assert.deepEqual(evaluateExpression("99999999999999999999*10"), {
    ok: true,
    value: "999999999999999999990",
  });
  assert.deepEqual(evaluateExpression("1/0"), { ok: false, error: "division by zero" });
  assert.equal(evaluateExpression("2+").ok, false);
  assert.equal(evaluateExpression("(2").ok, false);
  assert.equal(evaluateExpression("2 3").ok, false);
});
