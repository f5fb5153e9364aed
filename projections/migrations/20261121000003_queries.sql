-- Read models of the query endpoints: note lists, command status.

-- `GET /v1/notes`: one owner's notes, newest change first, walked by the keyset
-- (updated_at, note_id); the second index serves the `status` filter. `updated_at` is an
-- RFC 3339 UTC string of fixed width, so text order is time order.
CREATE INDEX IF NOT EXISTS notes_by_owner_updated ON notes (owner, updated_at, note_id);
CREATE INDEX IF NOT EXISTS notes_by_owner_status_updated
    ON notes (owner, status, updated_at, note_id);

-- What the notes processor answered to each command (`notes.outcomes`). A projection like
-- the others: rebuilt from the log, first outcome of a command id wins.
CREATE TABLE IF NOT EXISTS command_outcomes (
    command_id TEXT PRIMARY KEY,
    note_id TEXT NOT NULL,
    command_type TEXT NOT NULL,
    -- `applied` or `rejected`.
    status TEXT NOT NULL,
    version BIGINT,
    code TEXT,
    message TEXT,
    occurred_at TEXT NOT NULL
);

-- The commands the API accepted, written by the API (not by a projection) before it
-- sends the command, so a client that got a 202 finds its command at once (`pending`),
-- before any outcome is on the log. Not derived from the log: a projection rebuild must
-- keep this table as it is.
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    note_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    command_type TEXT NOT NULL,
    accepted_at TEXT NOT NULL
);
