-- Search on SQLite (per-database: FTS5 and BLOB are SQLite's own).
--
-- Vectors as little-endian f32 bytes (4 bytes a dimension, read without parsing);
-- `embedding_vector` (JSON text) is only read for rows written before this migration.
ALTER TABLE note_artifacts ADD COLUMN embedding_f32 BLOB;

-- The published version of each live note, the only text keyword search may match.
-- `doc_id` is the FTS rowid: declared, so VACUUM never renumbers it.
CREATE TABLE IF NOT EXISTS search_documents (
    doc_id INTEGER PRIMARY KEY,
    note_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_documents_by_owner ON search_documents (owner);

-- The full-text index of those rows (external content: the text is stored once), kept
-- in step by triggers, so every writer of `search_documents` (the fold, a rebuild's
-- swap) keeps it right. Porter stemming: "kill" finds "killed".
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
    title, body, content='search_documents', content_rowid='doc_id',
    tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS search_documents_ai AFTER INSERT ON search_documents BEGIN
    INSERT INTO search_fts (rowid, title, body) VALUES (new.doc_id, new.title, new.body);
END;
CREATE TRIGGER IF NOT EXISTS search_documents_ad AFTER DELETE ON search_documents BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, body)
    VALUES ('delete', old.doc_id, old.title, old.body);
END;
CREATE TRIGGER IF NOT EXISTS search_documents_au AFTER UPDATE ON search_documents BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, body)
    VALUES ('delete', old.doc_id, old.title, old.body);
    INSERT INTO search_fts (rowid, title, body) VALUES (new.doc_id, new.title, new.body);
END;

-- Notes whose latest version is the published one (a rebuild of the projection gives
-- the rest).
INSERT INTO search_documents (note_id, owner, version, title, body)
SELECT note_id, owner, version, title, body FROM notes
WHERE deleted_at IS NULL AND published_version = version;
