import assert from "node:assert/strict";
import {
  ConfigError,
  loadConfig,
  TEST_KNOBS,
  UNSAFE_GUARD_NAMES,
} from "../../../src/config/mod.ts";

const SECRET = "x".repeat(32);
const PRODUCTION = { APP_ENV: "production", JWT_SECRET: SECRET };

/** A value that switches each knob on. */
const ON: Record<string, string[]> = {
  TEST_DELAY_VERIFY_MS: ["1"],
  TEST_DELAY_SUBSCRIBE_MS: ["1"],
  TEST_DELAY_CATCH_UP_MS: ["1"],
  TEST_UNSAFE_GUARDS_OFF: [...UNSAFE_GUARD_NAMES, UNSAFE_GUARD_NAMES.join(",")],
};

Deno.test("loadConfig() reads no TEST_ variable that is not a listed test knob", () => {
  const read = new Set<string>();
  loadConfig((name) => {
    read.add(name);
    return undefined;
  });
  const testVariables = [...read].filter((name) => name.startsWith("TEST_")).sort();
  assert.deepEqual(testVariables, Object.keys(TEST_KNOBS).sort());
  assert.deepEqual(Object.keys(ON).sort(), testVariables, "this test sets every one of them");
});

Deno.test("loadConfig() with APP_ENV=production refuses every test knob, naming it", async (t) => {
  for (const [name, values] of Object.entries(ON)) {
    for (const value of values) {
      await t.step(`${name}=${value}`, () => {
        const env: Record<string, string> = { ...PRODUCTION, [name]: value };
        let error: unknown;
        try {
          loadConfig((n) => env[n]);
        } catch (caught) {
          error = caught;
        }
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, name);
        assert.match(error.message, /test-only knob/);
      });
    }
  }
});

Deno.test("loadConfig() in development takes each test knob, and each one shows as set", () => {
  for (const [name, values] of Object.entries(ON)) {
    const config = loadConfig((n) => (n === name ? values[0] : undefined));
    assert.equal(TEST_KNOBS[name](config.testing), true, name);
  }
  const plain = loadConfig(() => undefined);
  for (const [name, isSet] of Object.entries(TEST_KNOBS)) {
    assert.equal(isSet(plain.testing), false, `${name} unset by default`);
  }
});
