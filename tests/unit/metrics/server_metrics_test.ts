import assert from "node:assert/strict";
import { ServerMetrics } from "../../../src/metrics/mod.ts";

function metrics(): ServerMetrics {
  return new ServerMetrics({
    openConnections: () => 0,
    raceViolations: () => [],
    dependencies: () => [],
    activeRuns: () => 0,
  });
}

Deno.test("ServerMetrics.recordRunEnd() counts runs by provider and outcome, and their tokens", () => {
  const m = metrics();
  m.recordRunEnd({
    provider: "openai",
    status: "completed",
    usage: { inputTokens: 120, outputTokens: 30 },
  });
  m.recordRunEnd({ provider: "openai", status: "failed", code: "rate_limited" });
  m.recordRunEnd({
    provider: "openai",
    status: "completed",
    usage: { inputTokens: 5, outputTokens: 2 },
  });
  const text = m.render();
  assert.match(text, /agentsocket_run_outcomes_total\{outcome="completed",provider="openai"\} 2/);
  assert.match(
    text,
    /agentsocket_run_outcomes_total\{outcome="rate_limited",provider="openai"\} 1/,
  );
  assert.match(text, /agentsocket_model_tokens_total\{direction="input",provider="openai"\} 125/);
  assert.match(text, /agentsocket_model_tokens_total\{direction="output",provider="openai"\} 32/);
});

Deno.test("ServerMetrics.firstPieceSeconds is a histogram on /metrics", () => {
  const m = metrics();
  m.firstPieceSeconds.observe(0.2);
  const text = m.render();
  assert.match(text, /# TYPE agentsocket_first_piece_seconds histogram/);
  assert.match(text, /agentsocket_first_piece_seconds_bucket\{le="0.25"\} 1/);
  assert.match(text, /agentsocket_first_piece_seconds_count 1/);
});
