-- The commands the API accepted, in a database of their own (SQLite: `commands.db`;
-- see projections/src/accepted.rs). The same table as the read store's
-- `commands` (20261121000003_queries.sql), whose rows the API moves here at start.
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    note_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    command_type TEXT NOT NULL,
    accepted_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_note ON commands (note_id, owner);
