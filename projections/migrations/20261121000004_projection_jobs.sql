-- Rebuild jobs of the projections (`POST /v1/admin/projections/{name}/replay`). The API
-- and the projector are separate processes that share only this database: the API
-- queues a job here, a projector claims it, runs the rebuild and writes its progress
-- here, and the API (and `notesaga replay`) read it back.
CREATE TABLE IF NOT EXISTS projection_jobs (
    job_id TEXT PRIMARY KEY,
    projection TEXT NOT NULL,
    -- `queued`, `running`, `swapping`, `done` or `failed`.
    state TEXT NOT NULL,
    events_applied BIGINT NOT NULL DEFAULT 0,
    -- Records in the log when last measured (the sum of the high watermarks).
    events_total BIGINT NOT NULL DEFAULT 0,
    events_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- Records between the rebuild's position and the high watermarks.
    lag BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    -- The claiming projector writes it with every progress update; a job whose
    -- heartbeat stopped lost its projector and is failed, so a new one can start.
    heartbeat_at TEXT,
    error TEXT
);

-- At most one unfinished rebuild per projection: a second request loses the race on
-- this index (409), whichever API instance it reached.
CREATE UNIQUE INDEX IF NOT EXISTS projection_jobs_one_active
    ON projection_jobs (projection) WHERE state IN ('queued', 'running', 'swapping');
