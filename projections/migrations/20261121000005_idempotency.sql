-- Idempotency keys of the API's commands (`Idempotency-Key` on POST, PUT, DELETE).
--
-- Written by the API, like `commands`, and NOT derived from the log: a projection
-- rebuild must leave this table as it is (a rebuilt store that forgot a key would let a
-- retried request become a second command).
--
-- One row per (owner, key): the request it was first used with (`fingerprint`: method,
-- path, If-Match and body), the command id and note id that request was given (a retry
-- after a crash re-sends the same command, which the notes processor answers once), and,
-- once the response is known, that response. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    command_id TEXT NOT NULL,
    note_id TEXT NOT NULL,
    -- NULL while the first request is in flight; then the response status.
    response_status BIGINT,
    -- The response's replayed headers (JSON object) and body (text).
    response_headers TEXT,
    response_body TEXT,
    created_at_ms BIGINT NOT NULL,
    -- When the request now holding the key started: an in-flight row whose holder is
    -- older than the API's bound is abandoned (crashed or timed out) and taken over.
    locked_at_ms BIGINT NOT NULL,
    -- After this the key is forgotten (purged lazily; treated as absent at once).
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, idempotency_key)
);

CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires_at_ms);
