import assert from "node:assert/strict";
import {
  defaultMaxConnections,
  DESCRIPTOR_MARGIN,
  FALLBACK_MAX_CONNECTIONS,
} from "../../../src/server/connection_capacity.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes`;

Deno.test("defaultMaxConnections() keeps a margin under the open-files soft limit", () => {
  assert.equal(defaultMaxConnections(() => LIMITS), 20000 - DESCRIPTOR_MARGIN);
  assert.equal(
    defaultMaxConnections(() =>
      LIMITS.replace("20000                20000", "unlimited            unlimited")
    ),
    1_000_000,
  );
});

Deno.test("defaultMaxConnections() falls back when the limit cannot be read", () => {
  assert.equal(defaultMaxConnections(() => "nothing useful"), FALLBACK_MAX_CONNECTIONS);
  assert.equal(
    defaultMaxConnections(() => {
      throw new Deno.errors.NotFound("no /proc");
    }),
    FALLBACK_MAX_CONNECTIONS,
  );
});
