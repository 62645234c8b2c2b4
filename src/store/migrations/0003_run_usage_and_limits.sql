-- agentsocket schema, version 3. Applied by src/store/migrate.ts like 0001: in one transaction
-- under the migrations' advisory lock, so that of several instances starting at once exactly
-- one applies it and the others find it recorded.
--
-- From this version on every ended run has an assistant message (its text may be empty) and a
-- failed or cancelled run keeps its reply so far in runs.reply. Runs ended before it keep what
-- they had: no message for a failed or cancelled run (inserting one now would place it after
-- every later message), which history shows as the user's message alone.

-- Tokens summed over the run's model calls and the last call's finish reason: NULL when never
-- reported. Nullable columns without a default: a change to the catalog only, no table rewrite.
ALTER TABLE runs
  ADD COLUMN input_tokens  bigint,
  ADD COLUMN output_tokens bigint,
  ADD COLUMN finish_reason text;

-- beginChat counts a user's runs in flight (maxActiveRuns) on every chat: this keeps the count to
-- that user's running rows. Building it reads runs once under a SHARE lock (writes to runs wait,
-- reads go on); on a large table an operator may build it first with
-- CREATE INDEX CONCURRENTLY runs_user_running ON runs (user_id) WHERE status = 'running';
-- which IF NOT EXISTS then leaves in place.
CREATE INDEX IF NOT EXISTS runs_user_running ON runs (user_id) WHERE status = 'running';
