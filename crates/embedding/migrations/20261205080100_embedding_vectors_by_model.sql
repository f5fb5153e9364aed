-- A note version may have a vector of several models (issue 13: `notesaga reembed`
-- stores a second model's vector beside the saga's): the key becomes (note, version,
-- model). Neither SQLite nor PostgreSQL changes a primary key in place portably, so the
-- rows move to a new table that takes the old one's name.
CREATE TABLE IF NOT EXISTS embedding_vectors_by_model (
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    model TEXT NOT NULL,
    dimensions BIGINT NOT NULL,
    -- JSON array of floats: portable, and only ever read whole.
    vector TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (note_id, version, model)
);

INSERT INTO embedding_vectors_by_model (note_id, version, model, dimensions, vector, created_at)
SELECT note_id, version, model, dimensions, vector, created_at FROM embedding_vectors;

DROP TABLE embedding_vectors;

ALTER TABLE embedding_vectors_by_model RENAME TO embedding_vectors;
