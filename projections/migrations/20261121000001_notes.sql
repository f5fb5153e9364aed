-- Read models of the notes projection. Portable between SQLite and PostgreSQL: only
-- TEXT, BIGINT and DOUBLE PRECISION columns; times are RFC 3339 UTC strings.

-- One row per note: its latest version and the pipeline status of that version.
CREATE TABLE IF NOT EXISTS notes (
    note_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_reason TEXT,
    published_version BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- What each note version produced, from the processors' replies.
CREATE TABLE IF NOT EXISTS note_artifacts (
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    embedding_model TEXT,
    embedding_dimensions BIGINT,
    embedding_vector TEXT,
    audio_key TEXT,
    audio_duration_ms BIGINT,
    audio_size_bytes BIGINT,
    PRIMARY KEY (note_id, version)
);

-- Offsets consumed, written in the same transaction as the rows they produced.
CREATE TABLE IF NOT EXISTS projection_offsets (
    projection TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (projection, topic, partition_id)
);
