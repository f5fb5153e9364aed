-- The embedding domain's own store. Portable between SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS embedding_vectors (
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    model TEXT NOT NULL,
    dimensions BIGINT NOT NULL,
    -- JSON array of floats: portable, and only ever read whole.
    vector TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (note_id, version)
);
