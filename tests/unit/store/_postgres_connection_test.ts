import assert from "node:assert/strict";
import postgres from "postgres";
import { explicitConnection } from "../../../src/store/_postgres_connection.ts";

/** What an application embedding agentsocket may have set for its own database. */
const HOSTILE = {
  PGHOST: "evil.example",
  PGPORT: "6543",
  PGUSER: "mallory",
  PGPASSWORD: "leaked",
  PGDATABASE: "theirs",
  PGSSL: "require",
  PGMAX: "1",
  PGCONNECT_TIMEOUT: "1",
  PGTARGETSESSIONATTRS: "standby",
  PGPREPARE: "false",
};

async function parsedWith(url: string) {
  const saved = Object.keys(HOSTILE).map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(HOSTILE)) Deno.env.set(name, value);
  try {
    const sql = postgres(url, explicitConnection(url)); // connects nothing yet
    const options = { ...sql.options } as unknown as Record<string, unknown>;
    await sql.end();
    return options;
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
}

Deno.test("explicitConnection() leaves postgres.js nothing to take from PG* variables", async () => {
  const options = await parsedWith("postgres://127.0.0.1/agentsocket");
  assert.deepEqual(options.host, ["127.0.0.1"]);
  assert.deepEqual(options.port, [5432]);
  assert.equal(options.user, "postgres");
  assert.equal(options.database, "agentsocket");
  assert.equal(await (options.pass as () => string)(), "");
  assert.equal(options.ssl, false);
  assert.equal(options.max, 10);
  assert.equal(options.connect_timeout, 30);
  assert.equal(options.prepare, true);
  assert.equal(options.target_session_attrs, "read-write");
});

Deno.test("explicitConnection() takes what the URL says, its query included", async () => {
  const options = await parsedWith(
    "postgresql://app:s%40cret@db.internal:6000/chat?sslmode=require&target_session_attrs=primary",
  );
  assert.deepEqual([options.host, options.port], [["db.internal"], [6000]]);
  assert.equal(options.user, "app");
  assert.equal(await (options.pass as () => string)(), "s@cret");
  assert.equal(options.database, "chat");
  assert.equal(options.ssl, "require");
  assert.equal(options.target_session_attrs, "primary");
});
