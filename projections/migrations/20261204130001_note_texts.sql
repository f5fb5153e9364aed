-- The text of every note version, so that the search index can take the *published*
-- version's words when its `NotePublished` arrives (the `notes` row holds the latest
-- version's text, which may be a newer, unpublished edit). Derived from the log.
CREATE TABLE IF NOT EXISTS note_texts (
    note_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (note_id, version)
);

-- What the rows before this migration can tell: the latest version's text.
INSERT INTO note_texts (note_id, version, title, body)
SELECT note_id, version, title, body FROM notes WHERE deleted_at IS NULL
ON CONFLICT (note_id, version) DO NOTHING;
