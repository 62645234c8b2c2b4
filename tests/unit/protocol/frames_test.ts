import assert from "node:assert/strict";
import { parseClientFrame } from "../../../src/protocol/mod.ts";

Deno.test("parseClientFrame() accepts each client frame", () => {
  assert.deepEqual(parseClientFrame('{"type":"hello"}'), {
    ok: true,
    frame: { type: "hello", token: undefined, resume: undefined },
  });
  assert.deepEqual(
    parseClientFrame('{"type":"hello","token":"t","resume":{"epoch":"e1","after":7}}'),
    { ok: true, frame: { type: "hello", token: "t", resume: { epoch: "e1", after: 7 } } },
  );
  assert.deepEqual(parseClientFrame('{"type":"chat","id":"c1","text":"hi","threadId":"t1"}'), {
    ok: true,
    frame: { type: "chat", id: "c1", text: "hi", threadId: "t1" },
  });
  assert.deepEqual(parseClientFrame('{"type":"cancel","runId":"r1"}'), {
    ok: true,
    frame: { type: "cancel", runId: "r1" },
  });
  assert.deepEqual(
    parseClientFrame(
      '{"type":"approve","runId":"r1","toolCallId":"tc1","approved":false,"reason":"no"}',
    ),
    {
      ok: true,
      frame: { type: "approve", runId: "r1", toolCallId: "tc1", approved: false, reason: "no" },
    },
  );
  assert.deepEqual(
    parseClientFrame('{"type":"approve","runId":"r1","toolCallId":"tc1","approved":true}'),
    { ok: true, frame: { type: "approve", runId: "r1", toolCallId: "tc1", approved: true } },
  );
  assert.deepEqual(parseClientFrame('{"type":"refresh","token":"t"}'), {
    ok: true,
    frame: { type: "refresh", token: "t" },
  });
  assert.deepEqual(parseClientFrame('{"type":"ping","extra":1}'), {
    ok: true,
    frame: { type: "ping" },
  });
});

Deno.test("parseClientFrame() answers hostile input with a code, never a throw", () => {
  const cases: [string, string][] = [
    ["", "bad_frame"],
    ["{", "bad_frame"],
    ["null", "bad_frame"],
    ["[]", "bad_frame"],
    ['"hello"', "bad_frame"],
    ["42", "bad_frame"],
    ["{}", "bad_frame"],
    ['{"type":7}', "bad_frame"],
    ['{"type":"__proto__"}', "unknown_type"],
    ['{"type":"constructor"}', "unknown_type"],
    ['{"type":"subscribe"}', "unknown_type"],
    ['{"type":"chat"}', "invalid_field"],
    ['{"type":"chat","id":"","text":"x"}', "invalid_field"],
    [`{"type":"chat","id":"${"x".repeat(129)}","text":"x"}`, "invalid_field"],
    ['{"type":"chat","id":"c","text":"   "}', "invalid_field"],
    ['{"type":"chat","id":"c","text":5}', "invalid_field"],
    ['{"type":"chat","id":"c","text":"x","threadId":3}', "invalid_field"],
    ['{"type":"cancel"}', "invalid_field"],
    ['{"type":"cancel","runId":{}}', "invalid_field"],
    ['{"type":"refresh"}', "invalid_field"],
    ['{"type":"refresh","token":""}', "invalid_field"],
    ['{"type":"hello","token":123}', "invalid_field"],
    ['{"type":"hello","resume":"x"}', "invalid_field"],
    ['{"type":"hello","resume":{"epoch":"e","after":-1}}', "invalid_field"],
    ['{"type":"hello","resume":{"epoch":"e","after":1.5}}', "invalid_field"],
    ['{"type":"hello","resume":{"epoch":"","after":1}}', "invalid_field"],
    ['{"type":"hello","resume":{"epoch":"e","after":"1"}}', "invalid_field"],
    ["\u0000\uffff", "bad_frame"],
    ['{"type":"chat","id":"a\\u0000b","text":"x"}', "invalid_field"],
    ['{"type":"chat","id":"\\ud800","text":"x"}', "invalid_field"],
    ['{"type":"cancel","runId":"r\\n1"}', "invalid_field"],
    ['{"type":"chat","id":"c","text":"x","threadId":"\\udfff"}', "invalid_field"],
    ['{"type":"chat","id":"c","text":"x","__proto__":{"polluted":true}}', "ok"],
  ];
  for (const [input, code] of cases) {
    const result = parseClientFrame(input);
    if (code === "ok") {
      assert.equal(result.ok, true, input);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      continue;
    }
    assert.equal(result.ok, false, input);
    if (!result.ok) {
      assert.equal(result.code, code, input);
      assert.ok(result.message.length > 0);
    }
  }
});

Deno.test("parseClientFrame() carries the chat id as ref when only another field is bad", () => {
  const result = parseClientFrame('{"type":"chat","id":"c9","text":""}');
  assert.equal(result.ok, false);
  if (!result.ok) assert.equal(result.ref, "c9");
});

Deno.test("parseClientFrame() survives deeply nested and very large input", () => {
  const nested = "[".repeat(100_000) + "]".repeat(100_000);
  assert.equal(parseClientFrame(nested).ok, false);
  const big = JSON.stringify({ type: "chat", id: "c", text: "x".repeat(1_000_000) });
  assert.equal(parseClientFrame(big).ok, true);
});

Deno.test("parseClientFrame() refuses a bad approve with invalid_field and the toolCallId as ref", () => {
  const bad = (frame: unknown) => parseClientFrame(JSON.stringify(frame));
  const base = { type: "approve", runId: "r1", toolCallId: "tc1", approved: true };
  assert.deepEqual(bad({ ...base, approved: "yes" }), {
    ok: false,
    code: "invalid_field",
    message: 'Field "approved" must be a boolean, received the string "yes"',
    ref: "tc1",
  });
  const noRun = bad({ ...base, runId: "" });
  assert.deepEqual([noRun.ok, !noRun.ok && noRun.ref], [false, "tc1"]);
  const noCall = bad({ ...base, toolCallId: 7 });
  assert.deepEqual([noCall.ok, !noCall.ok && noCall.code, !noCall.ok && noCall.ref], [
    false,
    "invalid_field",
    undefined,
  ]);
  const long = bad({ ...base, reason: "x".repeat(2_001) });
  assert.equal(long.ok ? "" : long.code, "invalid_field");
});
