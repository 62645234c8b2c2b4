/**
 * Unit tests of the bench harness's own logic (no server, no network): percentiles that count
 * failures, the run order, the flags, the CPU readings and the report. Run with
 * `deno test -A tests/bench/`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { cpuMs, probeDelta, treeCpuMs } from "./_proc.ts";
import { cpuPerOperation, cpuRows, pairRow, printTable } from "./_report.ts";
import { HelpRequested, listFlag, parseSettings } from "./_settings.ts";
import { rotation, summarize } from "./_stats.ts";
import { pairOrder } from "./phases/_pair.ts";
import { PHASES } from "./phases/mod.ts";

const noEnv = { get: (_name: string) => undefined };

Deno.test("summarize() counts each failure as the worst value", () => {
  const ok = Array.from({ length: 98 }, (_, i) => i + 1); // 1 … 98 ms
  const summary = summarize(ok, { failures: 2, worst: 30_000 });
  assert.equal(summary.n, 100);
  assert.equal(summary.p50, 50);
  assert.equal(summary.p99, 30_000);
  assert.equal(summary.max, 30_000);
});

Deno.test("summarize() without failures is the sample's own", () => {
  const summary = summarize([3, 1, 2]);
  assert.deepEqual([summary.n, summary.p50, summary.max, summary.mean], [3, 2, 3, 2]);
});

Deno.test("summarize() refuses failures without a worst value", () => {
  assert.throws(() => summarize([1], { failures: 1 }), TypeError);
});

Deno.test("rotation() puts each item first in turn", () => {
  assert.deepEqual(rotation(["a", "b", "c"], 0), ["a", "b", "c"]);
  assert.deepEqual(rotation(["a", "b", "c"], 1), ["b", "c", "a"]);
  assert.deepEqual(rotation(["a", "b", "c"], 5), ["c", "a", "b"]);
});

Deno.test("pairOrder() alternates agentsocket and bare per repeat", () => {
  assert.deepEqual(pairOrder(0), ["agentsocket", "bare"]);
  assert.deepEqual(pairOrder(1), ["bare", "agentsocket"]);
  assert.deepEqual(pairOrder(2), ["agentsocket", "bare"]);
});

Deno.test("parseSettings() runs every phase with both engines by default", () => {
  const settings = parseSettings([], PHASES, noEnv);
  assert.equal(settings.mode, "full");
  assert.equal(settings.runs, 5);
  assert.deepEqual(settings.phases, PHASES.map((p) => p.name));
  assert.deepEqual(settings.engines, ["memory", "services"]);
  assert.equal(settings.complete, true);
  assert.equal(settings.flags["socketio-runtime"], "node");
});

Deno.test("parseSettings() quick mode keeps to the memory engine unless a named phase needs more", () => {
  assert.deepEqual(parseSettings(["--quick"], PHASES, noEnv).engines, ["memory"]);
  const only = parseSettings(["--quick", "--only=socketio"], PHASES, noEnv);
  assert.deepEqual(only.engines, ["memory", "services"]);
  assert.deepEqual(only.phases, ["socketio"]);
  assert.equal(only.complete, false);
  assert.equal(parseSettings([], PHASES, { get: () => "1" }).mode, "quick");
});

Deno.test("parseSettings() takes phase flags and checks their values", () => {
  const settings = parseSettings(
    ["--only=socketio", "--socketio-adapters=streams", "--socketio-runtime=deno"],
    PHASES,
    noEnv,
  );
  assert.deepEqual(listFlag(settings, "socketio-adapters"), ["streams"]);
  assert.equal(settings.flags["socketio-runtime"], "deno");
  assert.throws(() => parseSettings(["--socketio-runtime=bun"], PHASES, noEnv), TypeError);
  assert.throws(() => parseSettings(["--socketio-adapters=kafka"], PHASES, noEnv), TypeError);
});

Deno.test("parseSettings() refuses unknown flags, phases and run counts", () => {
  assert.throws(() => parseSettings(["--fast"], PHASES, noEnv), TypeError);
  assert.throws(() => parseSettings(["--only=nonesuch"], PHASES, noEnv), /unknown "nonesuch"/);
  assert.throws(() => parseSettings(["--runs=0"], PHASES, noEnv), RangeError);
  assert.throws(() => parseSettings(["--help"], PHASES, noEnv), HelpRequested);
});

Deno.test("treeCpuMs() counts at least the root's own time", () => {
  // Burn some CPU so that the reading is above one clock tick.
  const until = performance.now() + 50;
  while (performance.now() < until) Math.sqrt(Math.random());
  const own = cpuMs(Deno.pid);
  const tree = treeCpuMs(Deno.pid);
  assert.ok(own > 0, `own CPU ${own}`);
  assert.ok(tree >= own, `tree ${tree} < own ${own}`);
  assert.ok(Number.isNaN(treeCpuMs(2 ** 22 + 7)), "a missing process reads NaN");
});

Deno.test("treeCpuMs() keeps the time of a child that exited", async () => {
  const tree0 = treeCpuMs(Deno.pid);
  const own0 = cpuMs(Deno.pid);
  // The child spins until it has used 200 ms of CPU, however loaded the machine is.
  const busy = 'import p from "node:process"; while (p.cpuUsage().user < 200_000) Math.random();';
  const child = await new Deno.Command(Deno.execPath(), { args: ["eval", busy] }).output();
  assert.ok(child.success, new TextDecoder().decode(child.stderr));
  const childMs = (treeCpuMs(Deno.pid) - tree0) - (cpuMs(Deno.pid) - own0);
  assert.ok(childMs >= 190, `the tree grew by ${childMs} ms beside the root's own time`);
});

Deno.test("probeDelta() subtracts reading by reading", () => {
  assert.deepEqual(probeDelta({ server: 10, redis: 5 }, { server: 25, redis: 6 }), {
    server: 15,
    redis: 1,
  });
});

Deno.test("cpuRows() totals server and services and puts the target on the total", () => {
  const a = cpuPerOperation({ server: 30, redis: 4, postgres: 2 }, 1000, 1000);
  const b = cpuPerOperation({ server: 10, redis: 0, postgres: 0 }, 1000, 1000);
  assert.equal(a.total, 36);
  const rows = cpuRows("s", [["agentsocket", a], ["bare", b]], {
    what: "event",
    unit: "µs",
    target: { text: "≤ 2×", test: (r) => r <= 2 },
    redisAtMost: 4,
  });
  assert.deepEqual(rows.map((r) => r.metric.split(" ")[0]), [
    "server",
    "Redis",
    "PostgreSQL",
    "total",
  ]);
  assert.equal(rows[0].target, undefined);
  assert.equal(rows[1].met, true);
  assert.equal(rows[3].ratio, 3.6);
  assert.equal(rows[3].met, false);
});

Deno.test("printTable() shows a ratio over zero as a dash", () => {
  const table = printTable([pairRow("section", "Redis", [4, 0])]);
  assert.match(table, /Redis\s+4\s+0\s+—/);
});
