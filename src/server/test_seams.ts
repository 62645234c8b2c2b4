/**
 * The test-only knobs (`TEST_*` variables, refused in production by `loadConfig`), applied in
 * one place at the wiring edge, so that production code reads without them: stretched
 * dependencies (a delayed token verification, subscription or catch-up read) and race guards
 * switched off (`TEST_UNSAFE_GUARDS_OFF`), which the race suite uses to show that each of its
 * tests fails without the guard it proves. With no knob set, every part is returned as it was
 * given and the guards are {@link SAFE_GUARDS}.
 *
 * @module
 */
import { delay } from "../_util/clock.ts";
import type { Clock } from "../_util/clock.ts";
import type { Logger } from "../_util/log.ts";
import type { EventEngine, EventSubscription } from "../bus/mod.ts";
import type { TestingConfig, UnsafeGuardName } from "../config/mod.ts";
import { SAFE_GUARDS } from "../connection/mod.ts";
import type { ConnectionGuards, HandshakeDeps, TokenVerifier } from "../connection/mod.ts";

/** The engine as the handshake uses it. */
export type HandshakeEngine = HandshakeDeps["engine"];

/** The parts the knobs bend, as the wiring made them. */
export interface SeamParts {
  readonly verifier: TokenVerifier;
  readonly engine: EventEngine;
  readonly clock: Clock;
  readonly log: Logger;
}

/** The parts to wire in their place. */
export interface Seamed {
  /** The verifier every path uses (handshake, refresh, upgrade header, REST). */
  readonly verifier: TokenVerifier;
  /** The engine the handshake coordinator uses. */
  readonly handshakeEngine: HandshakeEngine;
  /** The connection actor's guards. */
  readonly guards: ConnectionGuards;
}

/**
 * Applies the test knobs of `testing` to `parts`.
 *
 * @param testing The `testing` section of the configuration (empty in production).
 * @param parts What the knobs bend.
 * @returns The parts to wire; the very ones given when no knob is set.
 */
export function applyTestSeams(testing: TestingConfig, parts: SeamParts): Seamed {
  const { clock, log } = parts;
  const off = new Set<UnsafeGuardName>(testing.guardsOff);
  if (off.size > 0) log.warn("UNSAFE: race guards switched off", { guards: [...off] });
  let verifier = parts.verifier;
  if (testing.verifyDelayMs > 0) verifier = delayedVerifier(verifier, testing.verifyDelayMs, clock);
  let handshakeEngine: HandshakeEngine = parts.engine;
  if (testing.subscribeDelayMs > 0 || testing.catchUpDelayMs > 0) {
    handshakeEngine = delayedHandshake(handshakeEngine, testing, clock);
  }
  if (off.has("subscribe_before_catch_up")) handshakeEngine = readBeforeSubscribe(handshakeEngine);
  const guards: ConnectionGuards = off.size === 0 ? SAFE_GUARDS : {
    waitForOpen: !off.has("wait_for_open"),
    queueBeforeReady: !off.has("queue_before_ready"),
    holdEventsUntilReady: !off.has("hold_events_until_ready"),
    dedupeBySeq: !off.has("dedupe_by_seq"),
  };
  return { verifier, handshakeEngine, guards };
}

/** TEST_DELAY_VERIFY_MS: stretches token verification. */
function delayedVerifier(verifier: TokenVerifier, ms: number, clock: Clock): TokenVerifier {
  return {
    async verify(token) {
      await delay(clock, ms);
      return await verifier.verify(token);
    },
  };
}

/**
 * TEST_DELAY_SUBSCRIBE_MS waits before the subscription is made (the window a naive
 * read-then-subscribe loses events in); TEST_DELAY_CATCH_UP_MS waits before the catch-up read
 * (the window in which an event arrives both live and in the replay, which a naive handler
 * delivers twice).
 */
function delayedHandshake(
  engine: HandshakeEngine,
  delays: { readonly subscribeDelayMs: number; readonly catchUpDelayMs: number },
  clock: Clock,
): HandshakeEngine {
  return {
    acquireConnection: (...args) => engine.acquireConnection(...args),
    releaseConnection: (...args) => engine.releaseConnection(...args),
    async subscribe(...args) {
      await delay(clock, delays.subscribeDelayMs);
      return await engine.subscribe(...args);
    },
    async catchUp(...args) {
      await delay(clock, delays.catchUpDelayMs);
      return await engine.catchUp(...args);
    },
  };
}

/**
 * Guard `subscribe_before_catch_up` off: the naive order. `subscribe` answers at once but the
 * subscription is made only after the user's next catch-up read, so an event published between
 * the read and the subscription is lost.
 */
function readBeforeSubscribe(engine: HandshakeEngine): HandshakeEngine {
  const waiting = new Map<string, (() => Promise<void>)[]>();
  return {
    acquireConnection: (...args) => engine.acquireConnection(...args),
    releaseConnection: (...args) => engine.releaseConnection(...args),
    subscribe(userId, listener) {
      let real: EventSubscription | undefined;
      let cancelled = false;
      const queue = waiting.get(userId) ?? [];
      waiting.set(userId, queue);
      queue.push(async () => {
        real = await engine.subscribe(userId, listener);
        if (cancelled) real.unsubscribe();
      });
      return Promise.resolve({
        unsubscribe() {
          cancelled = true;
          real?.unsubscribe();
        },
      });
    },
    async catchUp(userId, resume) {
      const read = await engine.catchUp(userId, resume);
      const subscribe = waiting.get(userId)?.shift();
      if (waiting.get(userId)?.length === 0) waiting.delete(userId);
      await subscribe?.();
      return read;
    },
  };
}
