import assert from "node:assert/strict";
import {
  defaultMaxConnections,
  DESCRIPTOR_MARGIN,
} from "../../../src/server/connection_capacity.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes`;

Deno.test("defaultMaxConnections() keeps a margin under the open-files soft limit", () => {
  assert.equal(defaultMaxConnections(() => LIMITS), 20000 - DESCRIPTOR_MARGIN);
});

Deno.test("defaultMaxConnections() sets no ceiling when the limit is unlimited or unreadable", () => {
  const unlimited = LIMITS.replace("20000                20000", "unlimited            unlimited");
  assert.equal(defaultMaxConnections(() => unlimited), undefined);
  assert.equal(defaultMaxConnections(() => "nothing useful"), undefined);
  assert.equal(
    defaultMaxConnections(() => {
      throw new Deno.errors.NotCapable("Requires all access to /proc/self/limits");
    }),
    undefined,
  );
});
