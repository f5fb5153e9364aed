//! The JSON bodies of the API as OpenAPI schemas.
//!
//! Most handlers build their answers with `json!` (or serialise a read-model type of
//! `notesaga-projections`, which does not depend on utoipa), so the schemas are written
//! here, one struct per body, field for field. They are never constructed: they exist to
//! be described. Drift between a schema and what a handler sends is caught by the test
//! suite, which checks every response it receives against `/openapi.json`
//! (`notesaga_testkit::openapi`), and by the schemathesis run in CI.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `202 Accepted` of a command: the note it is about and the command's id; `Location`
/// is `/v1/commands/{command_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// The note (a new one's id for a create).
    pub note_id: Uuid,
    /// The command; its status is at `/v1/commands/{command_id}`.
    pub command_id: Uuid,
}

/// A note to create, or a note's new content.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteInput {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// 1 to 100,000 bytes of UTF-8.
    #[schema(min_length = 1)]
    pub body: String,
}

/// The status of a note's latest version in the pipeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoteStatus {
    /// Its saga is running.
    Processing,
    /// The latest version is published (searchable, listenable).
    Published,
    /// The latest version could not be published (`failure_reason` says why).
    Failed,
}

/// The published version's embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingInfo {
    /// The model that embedded it.
    pub model: String,
    /// The vector's length.
    pub dimensions: i64,
}

/// The published version's narration.
#[derive(Debug, Serialize, ToSchema)]
pub struct NarrationInfo {
    /// Where the audio is (`/v1/notes/{note_id}/audio`).
    pub audio_url: String,
    /// Its length.
    pub duration_ms: i64,
}

/// A note. `GET /v1/notes/{note_id}` includes `body`; list items leave it out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Note {
    /// The note.
    pub note_id: Uuid,
    /// The user who owns it (the token's `sub`).
    pub owner: String,
    /// Title of the latest version.
    pub title: String,
    /// Body of the latest version (only on `GET /v1/notes/{note_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub body: Option<String>,
    /// The latest version.
    #[schema(minimum = 1)]
    pub version: i64,
    /// Where the latest version is in the pipeline.
    pub status: NoteStatus,
    /// Why the latest version failed (only when `status` is `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub failure_reason: Option<String>,
    /// The version readers see in search and audio, if any.
    #[schema(required = true)]
    pub published_version: Option<i64>,
    /// The published version's embedding, if any.
    #[schema(required = true)]
    pub embedding: Option<EmbeddingInfo>,
    /// The published version's narration, if any.
    #[schema(required = true)]
    pub narration: Option<NarrationInfo>,
    /// When the note was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the note last changed (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One page of the caller's notes.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotePage {
    /// Most recently changed first; without `body`.
    pub items: Vec<Note>,
    /// `cursor` of the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// What became of a command.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatusName {
    /// Not decided yet.
    Pending,
    /// Applied; `version` is the note version it produced.
    Applied,
    /// Rejected; `rejection` says why.
    Rejected,
}

/// Why a command was rejected.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejection {
    /// `not_found`, `version_conflict`, `invalid`, …
    pub code: String,
    /// For people.
    pub message: String,
}

/// `GET /v1/commands/{command_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandStatus {
    /// The command.
    pub command_id: Uuid,
    /// Its note.
    pub note_id: Uuid,
    /// `CreateNote`, `EditNote` or `DeleteNote`.
    pub command_type: String,
    /// `pending`, `applied` or `rejected`.
    pub status: CommandStatusName,
    /// The note version an applied command produced.
    #[schema(required = true)]
    pub version: Option<i64>,
    /// Why a rejected command was rejected.
    #[schema(required = true)]
    pub rejection: Option<Rejection>,
    /// When the API accepted it (RFC 3339).
    #[schema(format = DateTime)]
    pub accepted_at: String,
    /// When it was decided (RFC 3339).
    #[schema(required = true, format = DateTime)]
    pub completed_at: Option<String>,
}

/// One search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// The note.
    pub note_id: Uuid,
    /// The note's current title.
    pub title: String,
    /// The published version that matched.
    pub version: i64,
    /// Higher is better; per mode: `semantic`, the cosine similarity; `keyword`, the
    /// full-text relevance divided by the best match's (1 for the best); `hybrid`, the
    /// fused score, 0 to 1.
    pub score: f32,
    /// The rankings that found the note.
    pub matched_by: Vec<MatchedBy>,
    /// A short piece of the published text: around the query's words when they
    /// matched, else the text's start.
    pub snippet: String,
}

/// A ranking of `GET /v1/search`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The full-text index found the query's words.
    Keyword,
    /// The note's vector is among the closest to the query's.
    Semantic,
}

/// `mode` of `GET /v1/search`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchModeName {
    /// Keyword and semantic rankings fused (the default).
    Hybrid,
    /// By meaning: the query's vector against the notes'.
    Semantic,
    /// By words: full-text search.
    Keyword,
}

/// `GET /v1/search`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Best first.
    pub results: Vec<SearchHit>,
}

/// A saga's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Working through its steps.
    Running,
    /// Undoing its completed steps.
    Compensating,
    /// Done.
    Completed,
    /// Undone.
    Compensated,
    /// A compensation cannot succeed: parked for an operator (`POST …/retry`).
    CompensationFailed,
    /// A newer version took over.
    Superseded,
}

/// A saga as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Saga {
    /// The saga.
    pub saga_id: Uuid,
    /// Its note.
    pub note_id: Uuid,
    /// The version it publishes (for a cleanup, the latest version when deleted).
    pub version: i64,
    /// `publish` or `cleanup`.
    pub kind: String,
    /// Where it is.
    pub state: SagaState,
    /// Made no progress for the configured time.
    pub stuck: bool,
    /// The step it is at (or was last at).
    #[schema(required = true)]
    pub step: Option<String>,
    /// That step's attempt.
    #[schema(required = true)]
    pub attempt: Option<i64>,
    /// Why it failed.
    #[schema(required = true)]
    pub failure_reason: Option<String>,
    /// When it started (RFC 3339).
    #[schema(format = DateTime)]
    pub started_at: String,
    /// When it last changed (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// One transition of a saga.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// The saga event's type (`StepRequested`, …).
    pub event: String,
    /// The step it is about.
    #[schema(required = true)]
    pub step: Option<String>,
    /// The attempt it is about.
    #[schema(required = true)]
    pub attempt: Option<i64>,
    /// The error it reports.
    #[schema(required = true)]
    pub error: Option<String>,
    /// What else it says.
    #[schema(required = true)]
    pub detail: Option<String>,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
}

/// `GET /v1/sagas/{saga_id}`: the saga and every transition, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaDetail {
    /// The saga.
    #[serde(flatten)]
    pub saga: Saga,
    /// Its transitions.
    pub timeline: Vec<TimelineEntry>,
}

/// `GET /v1/sagas`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaList {
    /// Most recently changed first.
    pub sagas: Vec<Saga>,
}

/// `GET /v1/notes/{note_id}/sagas`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteSagas {
    /// The note.
    pub note_id: Uuid,
    /// Its sagas, deleted notes' cleanup sagas included.
    pub sagas: Vec<Saga>,
}

/// `202` of `POST /v1/admin/sagas/{saga_id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaRetry {
    /// The saga.
    pub saga_id: Uuid,
    /// Its state when the retry was requested (`compensation_failed`).
    pub state: SagaState,
    /// Always `requested`: the orchestrator acts on it.
    #[schema(pattern = "^requested$")]
    pub retry: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    pub status: String,
}

/// One dependency's verdict.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Answered in time.
    Ok,
    /// Failed or timed out (the cause is in the log).
    Failed,
}

/// The dependencies `/readyz` checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The read store answers a query.
    pub database: Check,
    /// The broker answers a metadata request.
    pub broker: Check,
    /// The schema registry lists its subjects.
    pub registry: Check,
}

/// `200` of `GET /readyz` (a `503` is a problem with the same `checks` member).
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(pattern = "^ready$")]
    pub status: String,
    /// Every check, each `ok`.
    pub checks: Checks,
}
