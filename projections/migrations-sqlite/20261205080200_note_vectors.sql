-- Vectors per (note, version, model) (issue 13): the saga's, and those a re-embedding
-- (`notesaga reembed --model M`) adds beside it, so search can keep answering from the
-- configured model's vectors while another model's are filled in, and switch when the
-- operator says. `note_artifacts` keeps the saga's embedding (what GET shows).
--
-- Vectors as little-endian f32 bytes, like `note_artifacts.embedding_f32`;
-- `vector_json` only for rows copied from before vectors were bytes.
CREATE TABLE IF NOT EXISTS note_vectors (
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    model TEXT NOT NULL,
    dimensions BIGINT NOT NULL,
    vector_f32 BLOB,
    vector_json TEXT,
    PRIMARY KEY (note_id, version, model)
);

-- The vectors the fold kept so far (a rebuild of the projection gives the same).
INSERT INTO note_vectors (note_id, version, model, dimensions, vector_f32, vector_json)
SELECT note_id, version, embedding_model, COALESCE(embedding_dimensions, 0),
       embedding_f32, embedding_vector
FROM note_artifacts
WHERE embedding_model IS NOT NULL
  AND (embedding_f32 IS NOT NULL OR embedding_vector IS NOT NULL)
ON CONFLICT (note_id, version, model) DO NOTHING;
