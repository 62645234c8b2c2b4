-- agentsocket schema, version 1. Applied by src/store/migrate.ts inside one
-- transaction under an advisory lock; recorded in schema_migrations.
--
-- Time values (created_at, lease_until, expires_at, ...) are written by the store from its
-- clock; ORDER comes only from the identity columns (position), assigned by the database.

CREATE TABLE threads (
  id          text PRIMARY KEY,
  -- Monotonic insertion number: newest-first listing and keyset paging (never OFFSET).
  position    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  user_id     text NOT NULL,
  title       text NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL
);
CREATE INDEX threads_user_position ON threads (user_id, position DESC);

CREATE TABLE runs (
  id              text PRIMARY KEY,
  user_id         text NOT NULL,
  thread_id       text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
  chat_id         text NOT NULL,
  text            text NOT NULL,
  status          text NOT NULL
                  CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
  start_seq       bigint,
  end_seq         bigint,
  owner_instance  text NOT NULL,
  lease_until     timestamptz NOT NULL,
  reply           text,
  error_code      text,
  error_message   text,
  -- The chat that started this run also created its thread (abandonChat removes both).
  created_thread  boolean NOT NULL,
  created_at      timestamptz NOT NULL,
  finished_at     timestamptz
);
-- One run in flight per thread: the loser of two concurrent chats gets thread_busy.
CREATE UNIQUE INDEX runs_one_running_per_thread ON runs (thread_id) WHERE status = 'running';
-- Runs another instance may have to take over (claimOrphanedRuns).
CREATE INDEX runs_unsettled_lease ON runs (lease_until)
  WHERE status = 'running' OR end_seq IS NULL;
-- Cascading deletes from threads (abandonChat) find their runs by thread.
CREATE INDEX runs_thread ON runs (thread_id);

CREATE TABLE messages (
  id          text PRIMARY KEY,
  -- Monotonic insertion number, from the database: message order and keyset paging.
  position    bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  thread_id   text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
  user_id     text NOT NULL,
  run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  role        text NOT NULL CHECK (role IN ('user', 'assistant')),
  text        text NOT NULL,
  seq         bigint,
  created_at  timestamptz NOT NULL
);
CREATE INDEX messages_thread_position ON messages (thread_id, position DESC);
CREATE UNIQUE INDEX messages_one_per_run_role ON messages (run_id, role);

-- Chat idempotency keys, per user (docs/protocol.md#idempotency). A row whose expires_at has passed is free: the
-- next chat with that id replaces it. The run is inserted after the key within the same
-- transaction, hence the deferred foreign key.
CREATE TABLE chat_keys (
  user_id     text NOT NULL,
  chat_id     text NOT NULL,
  run_id      text NOT NULL
              REFERENCES runs (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  thread_id   text NOT NULL,
  text        text NOT NULL,
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, chat_id)
);
CREATE INDEX chat_keys_run ON chat_keys (run_id);
