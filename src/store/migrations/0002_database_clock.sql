-- agentsocket schema, version 2. Applied by src/store/migrate.ts like 0001.
--
-- From this version on, every time value (created_at, updated_at, finished_at, lease_until,
-- expires_at) is written and compared with the DATABASE's clock (now(), clock_timestamp()),
-- never an instance's: with several instances, only one clock decides whether a lease has
-- ended (docs/protocol.md#run-events). This supersedes the note at the top of 0001_init.sql. Rows written by
-- older instances keep their values; they were meant as the same instants.

-- The periodic sweep deletes expired chat ids (PostgresStore.claimOrphanedRuns) in
-- expires_at order: without this index each sweep would read the whole table.
CREATE INDEX chat_keys_expires_at ON chat_keys (expires_at);
