/**
 * The test-only knobs: variables that stretch a dependency or switch a race guard off, so the
 * race suite can force an interleaving and show that each test fails without its guard. All
 * are unset (zero, empty) by default, and production refuses every one of them at start. They
 * are applied in one place, `src/server/test_seams.ts`.
 *
 * @module
 */
import { ConfigError } from "./env_reader.ts";
import type { EnvReading } from "./env_reader.ts";

/** Guards that tests may switch off to prove the race tests can fail (never in production). */
export const UNSAFE_GUARD_NAMES = [
  "wait_for_open",
  "queue_before_ready",
  "hold_events_until_ready",
  "subscribe_before_catch_up",
  "dedupe_by_seq",
] as const;

/** A guard named in {@link UNSAFE_GUARD_NAMES}. */
export type UnsafeGuardName = typeof UNSAFE_GUARD_NAMES[number];

/** The test-only knobs; all zero or empty unless set. */
export interface TestingConfig {
  /** `TEST_DELAY_VERIFY_MS`: every token verification waits this long first. */
  readonly verifyDelayMs: number;
  /** `TEST_DELAY_SUBSCRIBE_MS`: a handshake's subscription waits this long first. */
  readonly subscribeDelayMs: number;
  /** `TEST_DELAY_CATCH_UP_MS`: a handshake's catch-up read waits this long first. */
  readonly catchUpDelayMs: number;
  /** `TEST_UNSAFE_GUARDS_OFF`: a comma list of {@link UNSAFE_GUARD_NAMES}. */
  readonly guardsOff: readonly UnsafeGuardName[];
}

/** Every test-only variable, each with whether the value read from it is set. */
export const TEST_KNOBS: Readonly<Record<string, (testing: TestingConfig) => boolean>> = {
  TEST_DELAY_VERIFY_MS: (t) => t.verifyDelayMs > 0,
  TEST_DELAY_SUBSCRIBE_MS: (t) => t.subscribeDelayMs > 0,
  TEST_DELAY_CATCH_UP_MS: (t) => t.catchUpDelayMs > 0,
  TEST_UNSAFE_GUARDS_OFF: (t) => t.guardsOff.length > 0,
};

/**
 * Reads the test knobs.
 *
 * @throws {ConfigError} naming the variable of a bad value, or of any knob set in production.
 */
export function readTestingConfig(env: EnvReading): TestingConfig {
  const delay = { min: 0, max: 60_000 };
  const testing: TestingConfig = {
    verifyDelayMs: env.int("TEST_DELAY_VERIFY_MS", 0, delay),
    subscribeDelayMs: env.int("TEST_DELAY_SUBSCRIBE_MS", 0, delay),
    catchUpDelayMs: env.int("TEST_DELAY_CATCH_UP_MS", 0, delay),
    guardsOff: guardList(env.read("TEST_UNSAFE_GUARDS_OFF")),
  };
  if (env.production) {
    for (const [name, isSet] of Object.entries(TEST_KNOBS)) {
      if (isSet(testing)) {
        throw new ConfigError(name, "is a test-only knob and must not be set in production");
      }
    }
  }
  return testing;
}

function guardList(raw: string | undefined): UnsafeGuardName[] {
  if (raw === undefined) return [];
  const names = raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  for (const name of names) {
    if (!(UNSAFE_GUARD_NAMES as readonly string[]).includes(name)) {
      throw new ConfigError(
        "TEST_UNSAFE_GUARDS_OFF",
        `has an unknown guard "${name}" (known: ${UNSAFE_GUARD_NAMES.join(", ")})`,
      );
    }
  }
  return names as UnsafeGuardName[];
}
