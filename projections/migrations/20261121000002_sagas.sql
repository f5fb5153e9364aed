-- Deleted notes answer 410 Gone and drop out of lists and search.
ALTER TABLE notes ADD COLUMN deleted_at TEXT;

-- One row per saga: its state as the saga's own events say (the same rule as the
-- orchestrator, `notesaga_sagas::note_pipeline::status_after`).
CREATE TABLE IF NOT EXISTS sagas (
    saga_id TEXT PRIMARY KEY,
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    stuck BIGINT NOT NULL,
    step TEXT,
    attempt BIGINT,
    failure_reason TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_by_note ON sagas (note_id, version);
CREATE INDEX IF NOT EXISTS sagas_by_state ON sagas (state, updated_at);

-- Every saga event, in log order: the timeline operators read.
CREATE TABLE IF NOT EXISTS saga_timeline (
    event_id TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    log_offset BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    step TEXT,
    attempt BIGINT,
    error TEXT,
    detail TEXT,
    occurred_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS saga_timeline_by_saga ON saga_timeline (saga_id, log_offset);
