-- A token per owner that the fold replaces whenever what the owner's semantic search
-- reads may have changed (a version published, a note deleted, a vector added or
-- removed). The API keeps each owner's vectors in memory and reloads them only when
-- this token differs from the one it loaded them under (issue 13: search over 10,000
-- notes of one user). Derived from the log; a rebuild writes fresh tokens, so a swap
-- also invalidates every cached copy.
CREATE TABLE IF NOT EXISTS search_generations (
    owner TEXT PRIMARY KEY,
    generation TEXT NOT NULL
);
