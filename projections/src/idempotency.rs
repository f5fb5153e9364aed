//! The API's idempotency keys (`Idempotency-Key`), kept in the read-store database.
//!
//! Like `commands`, the `idempotency_keys` table is written by the API and is not derived
//! from the log, so a projection rebuild leaves it alone. A key belongs to one owner; it
//! is bound to the first request it came with (its fingerprint) and the command id and
//! note id that request was given, and, once that request answered, to its response.
//!
//! A crash between "key reserved" and "response stored" leaves the row in flight. Such a
//! row blocks its key (409) only until its holder is older than the caller's
//! `abandoned_after`; then the next request with the key *resumes* it: it gets the same
//! command id and note id and re-sends the same command, which the notes processor
//! answers once (it repeats the outcome of a command id it has handled). So a key never
//! becomes a second command, and never stays blocked.

use sqlx::Row as _;
use uuid::Uuid;

use crate::{ReadStore, Result};

/// A request asking for a key.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// Whose key.
    pub owner: String,
    /// The key as the client sent it.
    pub key: String,
    /// What identifies the request (method, path, preconditions, body), e.g. a hash.
    pub fingerprint: String,
    /// The command id this request gets if the key is new.
    pub command_id: Uuid,
    /// The note id this request gets if the key is new.
    pub note_id: Uuid,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// How long a key is kept from its first use, in milliseconds.
    pub retention_ms: i64,
    /// After how many milliseconds an in-flight holder counts as crashed.
    pub abandoned_after_ms: i64,
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to replay (name, value), `Content-Type` among them.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// What became of a request for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The request holds the key and must send its command with these ids.
    Reserved {
        /// The command id to send.
        command_id: Uuid,
        /// The note id to send.
        note_id: Uuid,
        /// An abandoned earlier request held these ids: its command may be on the log
        /// already, so it must be re-sent as it is, never dropped for a new one.
        resumed: bool,
    },
    /// The first request with the key answered this: replay it.
    Completed(StoredResponse),
    /// The first request with the key is still being answered.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// A row as a reservation sees it.
#[derive(Debug)]
struct KeyRow {
    fingerprint: String,
    command_id: String,
    note_id: String,
    response_status: Option<i64>,
    response_headers: Option<String>,
    response_body: Option<String>,
    locked_at_ms: i64,
    expires_at_ms: i64,
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|err| sqlx::Error::Decode(Box::new(err)).into())
}

impl ReadStore {
    /// Reserves `request.key` for this request, or says why not (replay, in flight,
    /// mismatch). Safe under concurrency: of two requests racing for a key exactly one
    /// gets it; every change is a compare-and-swap on the row it read.
    pub async fn reserve_idempotency_key(&self, request: &KeyRequest) -> Result<Reservation> {
        // Each round either decides or lost a race for a row that changed under it; the
        // row only moves forward, so a few rounds always settle.
        for _ in 0..5 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (owner, idempotency_key, fingerprint, command_id, \
                   note_id, created_at_ms, locked_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (owner, idempotency_key) DO NOTHING",
            )
            .bind(request.owner.clone())
            .bind(request.key.clone())
            .bind(request.fingerprint.clone())
            .bind(request.command_id.to_string())
            .bind(request.note_id.to_string())
            .bind(request.now_ms)
            .bind(request.now_ms)
            .bind(request.now_ms + request.retention_ms)
            .execute(self.pool())
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Reservation::Reserved {
                    command_id: request.command_id,
                    note_id: request.note_id,
                    resumed: false,
                });
            }
            let Some(row) = self.idempotency_row(&request.owner, &request.key).await? else {
                continue;
            };
            if row.expires_at_ms <= request.now_ms {
                // Expired but not purged yet: the key is new again.
                if self.renew_expired(request, &row).await? {
                    return Ok(Reservation::Reserved {
                        command_id: request.command_id,
                        note_id: request.note_id,
                        resumed: false,
                    });
                }
                continue;
            }
            if row.fingerprint != request.fingerprint {
                return Ok(Reservation::Mismatch);
            }
            if let Some(status) = row.response_status {
                let headers = row
                    .response_headers
                    .as_deref()
                    .map(serde_json::from_str::<Vec<(String, String)>>)
                    .transpose()
                    .map_err(|err| sqlx::Error::Decode(Box::new(err)))?
                    .unwrap_or_default();
                return Ok(Reservation::Completed(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    headers,
                    body: row.response_body.unwrap_or_default(),
                }));
            }
            if row.locked_at_ms + request.abandoned_after_ms > request.now_ms {
                return Ok(Reservation::InFlight);
            }
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET locked_at_ms = $1 \
                 WHERE owner = $2 AND idempotency_key = $3 AND locked_at_ms = $4 \
                   AND response_status IS NULL",
            )
            .bind(request.now_ms)
            .bind(request.owner.clone())
            .bind(request.key.clone())
            .bind(row.locked_at_ms)
            .execute(self.pool())
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Reservation::Reserved {
                    command_id: parse_uuid(&row.command_id)?,
                    note_id: parse_uuid(&row.note_id)?,
                    resumed: true,
                });
            }
        }
        // Rows changing this fast are another request's at work.
        Ok(Reservation::InFlight)
    }

    async fn idempotency_row(&self, owner: &str, key: &str) -> Result<Option<KeyRow>> {
        let row = sqlx::query(
            "SELECT fingerprint, command_id, note_id, response_status, response_headers, \
                    response_body, locked_at_ms, expires_at_ms \
             FROM idempotency_keys WHERE owner = $1 AND idempotency_key = $2",
        )
        .bind(owner.to_owned())
        .bind(key.to_owned())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(KeyRow {
                fingerprint: row.try_get("fingerprint")?,
                command_id: row.try_get("command_id")?,
                note_id: row.try_get("note_id")?,
                response_status: row.try_get("response_status")?,
                response_headers: row.try_get("response_headers")?,
                response_body: row.try_get("response_body")?,
                locked_at_ms: row.try_get("locked_at_ms")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
            })
        })
        .transpose()
    }

    /// Rebinds an expired key to `request`, if the row is still the one read.
    async fn renew_expired(&self, request: &KeyRequest, seen: &KeyRow) -> Result<bool> {
        let renewed = sqlx::query(
            "UPDATE idempotency_keys SET fingerprint = $1, command_id = $2, note_id = $3, \
               response_status = NULL, response_headers = NULL, response_body = NULL, \
               created_at_ms = $4, locked_at_ms = $4, expires_at_ms = $5 \
             WHERE owner = $6 AND idempotency_key = $7 AND locked_at_ms = $8 \
               AND expires_at_ms = $9",
        )
        .bind(request.fingerprint.clone())
        .bind(request.command_id.to_string())
        .bind(request.note_id.to_string())
        .bind(request.now_ms)
        .bind(request.now_ms + request.retention_ms)
        .bind(request.owner.clone())
        .bind(request.key.clone())
        .bind(seen.locked_at_ms)
        .bind(seen.expires_at_ms)
        .execute(self.pool())
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Stores the response of the request that holds `key` with `command_id`; a later
    /// request with the key replays it. A key already answered keeps its first answer.
    pub async fn complete_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        command_id: Uuid,
        response: &StoredResponse,
    ) -> Result<()> {
        let headers = serde_json::to_string(&response.headers)
            .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
        sqlx::query(
            "UPDATE idempotency_keys \
             SET response_status = $1, response_headers = $2, response_body = $3 \
             WHERE owner = $4 AND idempotency_key = $5 AND command_id = $6 \
               AND response_status IS NULL",
        )
        .bind(i64::from(response.status))
        .bind(headers)
        .bind(response.body.clone())
        .bind(owner.to_owned())
        .bind(key.to_owned())
        .bind(command_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Frees a key whose request failed before its command could have been sent (a
    /// check answered 4xx, or the store failed): the client may use it again.
    pub async fn release_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        command_id: Uuid,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE owner = $1 AND idempotency_key = $2 AND command_id = $3 \
               AND response_status IS NULL",
        )
        .bind(owner.to_owned())
        .bind(key.to_owned())
        .bind(command_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a key's holder as gone at once, for a request whose command may or may not
    /// be on the log (sending failed): the next request with the key resumes it and
    /// re-sends the same command instead of waiting for the in-flight bound.
    pub async fn abandon_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        command_id: Uuid,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET locked_at_ms = 0 \
             WHERE owner = $1 AND idempotency_key = $2 AND command_id = $3 \
               AND response_status IS NULL",
        )
        .bind(owner.to_owned())
        .bind(key.to_owned())
        .bind(command_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes the keys expired by `now_ms`; returns how many.
    pub async fn purge_idempotency_keys(&self, now_ms: i64) -> Result<u64> {
        let purged = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(purged.rows_affected())
    }
}
