import assert from "node:assert/strict";
import { loadMigrations, MIGRATION_FILES } from "../../../src/store/migrate.ts";

Deno.test("MIGRATION_FILES lists every file in src/store/migrations, in order", async () => {
  const dir = new URL("../../../src/store/migrations/", import.meta.url);
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile) names.push(entry.name);
  }
  assert.deepEqual([...MIGRATION_FILES], names.sort());
  for (const name of names) assert.match(name, /^\d{4}_[a-z0-9_]+\.sql$/);
});

Deno.test("loadMigrations() reads each file beside the module", async () => {
  const migrations = await loadMigrations();
  assert.deepEqual(migrations.map((m) => m.name), [...MIGRATION_FILES]);
  assert.match(migrations[0].sql, /CREATE TABLE threads/);
});
