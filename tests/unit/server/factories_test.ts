/**
 * The folder factories the composition root lists: each builds its part from its settings.
 */
import assert from "node:assert/strict";
import { createAgent, DemoAgent } from "../../../src/agent/mod.ts";
import { createVerifier } from "../../../src/auth/mod.ts";
import { InvalidTokenError } from "../../../src/connection/mod.ts";
import { createEngine, MemoryEngine } from "../../../src/bus/mod.ts";
import { loadConfig } from "../../../src/config/mod.ts";
import { createStore, MemoryStore } from "../../../src/store/mod.ts";
import { silentLogger } from "../../../src/_util/log.ts";
import { ManualClock } from "../../_helpers/manual_clock.ts";

const deps = { clock: new ManualClock(), log: silentLogger };
const defaults = loadConfig(() => undefined);

Deno.test("createStore() and createEngine() build the in-memory parts when no service is configured", async () => {
  const store = await createStore(defaults, deps);
  const engine = await createEngine(defaults, deps);
  assert.ok(store instanceof MemoryStore);
  assert.ok(engine instanceof MemoryEngine);
  assert.equal(engine.shared, false, "no readiness probe for it");
  await store.close();
  await engine.close();
});

Deno.test("createAgent() builds the demo agent unless AGENT names a model", () => {
  assert.ok(createAgent({ ...defaults.llm, ...defaults.agent }, deps) instanceof DemoAgent);
});

Deno.test("createVerifier() in development signs dev tokens its verifier accepts", async () => {
  const { verifier, devTokens } = await createVerifier({ ...defaults.jwt, devTokens: true });
  assert.ok(devTokens);
  const principal = await verifier.verify(await devTokens.issue("alice"));
  assert.equal(principal.userId, "alice");
  await assert.rejects(verifier.verify("garbage"), InvalidTokenError);
});

Deno.test("createVerifier() issues no dev tokens when they are not allowed or the key is not a secret", async () => {
  const production = await createVerifier({ ...defaults.jwt, devTokens: false });
  assert.equal(production.devTokens, undefined);
  const jwks = await createVerifier({
    ...defaults.jwt,
    key: { kind: "jwks", url: "https://127.0.0.1:1/jwks" },
    devTokens: true,
  });
  assert.equal(jwks.devTokens, undefined);
});

Deno.test("createVerifier() refuses a public key it cannot use", async () => {
  await assert.rejects(
    createVerifier({
      ...defaults.jwt,
      key: {
        kind: "public_key",
        key: "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----",
      },
      devTokens: false,
    }),
  );
});
