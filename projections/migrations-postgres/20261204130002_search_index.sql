-- Search on PostgreSQL (per-database: bytea, tsvector, GIN and plpgsql are its own).
--
-- Vectors as little-endian f32 bytes (4 bytes a dimension, read without parsing);
-- `embedding_vector` (JSON text) is only read for rows written before this migration.
ALTER TABLE note_artifacts ADD COLUMN embedding_f32 BYTEA;

-- The published version of each live note, the only text keyword search may match.
CREATE TABLE IF NOT EXISTS search_documents (
    note_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    -- Title words weigh more than body words. Filled by the trigger below rather than
    -- declared GENERATED, so a rebuild's swap can copy rows with `SELECT *`.
    tsv tsvector
);
CREATE INDEX IF NOT EXISTS search_documents_by_owner ON search_documents (owner);
CREATE INDEX IF NOT EXISTS search_documents_tsv ON search_documents USING GIN (tsv);

CREATE OR REPLACE FUNCTION search_documents_tsv() RETURNS trigger AS $$
BEGIN
    NEW.tsv := setweight(to_tsvector('english', NEW.title), 'A')
        || setweight(to_tsvector('english', NEW.body), 'B');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER search_documents_tsv BEFORE INSERT OR UPDATE ON search_documents
    FOR EACH ROW EXECUTE FUNCTION search_documents_tsv();

-- Notes whose latest version is the published one (a rebuild of the projection gives
-- the rest).
INSERT INTO search_documents (note_id, owner, version, title, body)
SELECT note_id, owner, version, title, body FROM notes
WHERE deleted_at IS NULL AND published_version = version;
