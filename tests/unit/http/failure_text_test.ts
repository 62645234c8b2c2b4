import assert from "node:assert/strict";
import {
  CHAT_REFUSAL_TEXT,
  failureText,
  LOST_TEXT,
  RUN_FAILURE_TEXT,
} from "../../../src/http/static/failure_text.ts";
import { ERROR_CODES, RUN_FAILURE_CODES } from "../../../src/protocol/mod.ts";

Deno.test("failureText() says a distinct sentence for every run failure code", () => {
  const sentences = RUN_FAILURE_CODES.map((code) => failureText("failed", code));
  for (const [index, sentence] of sentences.entries()) {
    assert.equal(sentence, RUN_FAILURE_TEXT[RUN_FAILURE_CODES[index]]);
    assert.match(sentence ?? "", /^[A-Z].*\.$/, RUN_FAILURE_CODES[index]);
  }
  assert.equal(new Set(sentences).size, sentences.length);
});

Deno.test("failureText() says a sentence for every chat refusal code, the client's own included", () => {
  for (const code of [...ERROR_CODES, "frame_too_large", "undeliverable"] as const) {
    const sentence = failureText("refused", code);
    assert.equal(sentence, CHAT_REFUSAL_TEXT[code]);
    assert.match(sentence ?? "", /^[A-Z].*\.$/, code);
  }
});

Deno.test("failureText() names a code it does not know, and adds the provider's wait", () => {
  assert.equal(failureText("failed", "new_code"), "The reply failed (new_code).");
  assert.equal(
    failureText("failed", undefined),
    "The reply failed, for a reason the server did not say.",
  );
  assert.equal(
    failureText("failed", "rate_limited", { retryAfterMs: 2500 }),
    `${RUN_FAILURE_TEXT.rate_limited} The provider asked to wait 3 s.`,
  );
  assert.equal(failureText("lost", "lost"), LOST_TEXT);
});

Deno.test("failureText() says nothing for a turn that completed, was stopped, or is going", () => {
  for (const status of ["sending", "running", "completed", "cancelled"] as const) {
    assert.equal(failureText(status, "provider_unavailable"), undefined);
  }
});
