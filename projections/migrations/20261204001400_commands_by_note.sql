-- The API looks up the accepted create of a note (by note and owner) when its read
-- model has not caught up yet (an edit or delete sent right after the create).
CREATE INDEX IF NOT EXISTS commands_by_note ON commands (note_id, owner);
