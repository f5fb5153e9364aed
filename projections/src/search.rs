//! Search over the published versions of one owner's notes: the index the notes
//! projection keeps ([`record_text`], [`index_published`], [`forget`]) and the queries
//! ([`ReadStore::find`]).
//!
//! Two rankings, fused in [`fusion`]:
//! - **keyword**: the query's content words ([`terms`]) against the published text,
//!   SQLite FTS5 with BM25 or PostgreSQL `tsvector` (GIN index) with
//!   `websearch_to_tsquery` and `ts_rank_cd` (the per-database migrations make the
//!   index);
//! - **semantic**: cosine similarity of the query's vector with each published vector of
//!   the configured model, stored as little-endian f32 bytes and scanned in Rust.
//!
//! Only the published version's text is in `search_documents`: an unpublished or failed
//! version's words never match, and a deleted note's leave with it.

pub mod fusion;
pub mod terms;
pub mod vector_cache;

use std::{collections::HashMap, sync::Arc, time::Instant};

use futures::TryStreamExt as _;
use sqlx::{Any, Row as _, Transaction};
use uuid::Uuid;

pub use self::fusion::{Fusion, KeywordScore, CANDIDATES};
use self::vector_cache::OwnerVectors;
use crate::{store::SearchHit, ReadStore, Result};

/// Which ranking answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Keyword and semantic, fused.
    #[default]
    Hybrid,
    /// Vectors only.
    Semantic,
    /// Words only.
    Keyword,
}

impl SearchMode {
    /// The mode named `name` (`hybrid`, `semantic`, `keyword`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hybrid" => Some(Self::Hybrid),
            "semantic" => Some(Self::Semantic),
            "keyword" => Some(Self::Keyword),
            _ => None,
        }
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    /// Whose notes.
    pub owner: &'a str,
    /// The query as typed.
    pub text: &'a str,
    /// The model whose vectors are compared (others are skipped).
    pub model: &'a str,
    /// The query's vector by that model (needed unless `mode` is keyword).
    pub vector: Option<&'a [f32]>,
    /// Which ranking answers.
    pub mode: SearchMode,
    /// At most this many hits.
    pub limit: usize,
    /// How hybrid fuses.
    pub fusion: Fusion,
}

/// `vector` as little-endian f32 bytes, 4 a dimension.
pub fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector of [`vector_bytes`] (`None` when the length is not a multiple of 4).
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// Keeps the text of a note version, for when (if ever) it is published. The first copy
/// in log order wins, as everywhere in the fold.
pub(crate) async fn record_text(
    tx: &mut Transaction<'static, Any>,
    note_id: Uuid,
    version: i64,
    title: &str,
    body: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO note_texts (note_id, version, title, body) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (note_id, version) DO NOTHING",
    )
    .bind(note_id.to_string())
    .bind(version)
    .bind(title.to_owned())
    .bind(body.to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Indexes the text of `version` if it is now the note's published version (the fold has
/// just applied `NotePublished`): replaces an older published version's text, never a
/// newer one's, and never indexes a deleted note.
pub(crate) async fn index_published(
    tx: &mut Transaction<'static, Any>,
    note_id: Uuid,
    version: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO search_documents (note_id, owner, version, title, body) \
         SELECT t.note_id, n.owner, t.version, t.title, t.body \
         FROM note_texts t JOIN notes n ON n.note_id = t.note_id \
         WHERE t.note_id = $1 AND t.version = $2 AND n.published_version = $3 \
           AND n.deleted_at IS NULL \
         ON CONFLICT (note_id) DO UPDATE SET version = excluded.version, \
           title = excluded.title, body = excluded.body \
         WHERE search_documents.version < excluded.version",
    )
    .bind(note_id.to_string())
    .bind(version)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks that what the semantic search of `note_id`'s owner reads may have changed:
/// replaces the owner's `search_generations` token, so every cached copy of the owner's
/// vectors ([`vector_cache`]) is reread on its next search. Called by the fold for every
/// event that changes a published version, a deletion or a vector, in the same
/// transaction. A note the fold has not seen yet has no owner here; its vectors only
/// count once its `NotePublished` is folded, which touches.
pub(crate) async fn touch(tx: &mut Transaction<'static, Any>, note_id: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO search_generations (owner, generation) \
         SELECT owner, $1 FROM notes WHERE note_id = $2 \
         ON CONFLICT (owner) DO UPDATE SET generation = excluded.generation",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(note_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets a deleted note's text.
pub(crate) async fn forget(tx: &mut Transaction<'static, Any>, note_id: Uuid) -> Result<()> {
    for table in ["search_documents", "note_texts"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE note_id = $1"))
            .bind(note_id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A keyword match: its engine score (higher is better), the share of the query's
/// content words it holds, and a snippet around the words.
#[derive(Debug, Clone)]
struct KeywordMatch {
    score: f32,
    coverage: f32,
    snippet: String,
}

/// Counter: semantic searches by whether the owner's vectors were in memory
/// (`result="hit"`) or read from the database (`result="miss"`).
pub const SEARCH_VECTOR_LOADS: &str = "notesaga_search_vector_loads_total";

/// Characters of a snippet cut from the start of a note (when no words matched).
const LEAD_CHARS: usize = 200;

impl ReadStore {
    /// The owner's published notes best matching `query`, best first (see the module
    /// docs; `score` per mode: semantic, the cosine similarity; keyword, the engine's
    /// relevance divided by the best match's, so 1 for the best; hybrid, the fused score,
    /// 0..=1). Deleted notes never.
    pub async fn find(&self, query: &SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        let semantic = match (query.mode, query.vector) {
            (SearchMode::Keyword, _) | (_, None) => Vec::new(),
            (_, Some(vector)) => self.semantic(query.owner, query.model, vector).await?,
        };
        let keyword = match query.mode {
            SearchMode::Semantic => HashMap::new(),
            _ => {
                let words = terms::content_words(query.text);
                self.keyword(query.owner, &words).await?
            }
        };
        let mut keyword_ranking: Vec<KeywordScore> = keyword
            .iter()
            .map(|(id, m)| KeywordScore {
                note_id: *id,
                score: m.score,
                coverage: m.coverage,
            })
            .collect();
        keyword_ranking.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.note_id.cmp(&b.note_id)));
        // (note, score, found by the semantic ranking, found by the keyword ranking)
        let ranked: Vec<(Uuid, f32, bool, bool)> = match query.mode {
            SearchMode::Semantic => semantic
                .iter()
                .take(query.limit)
                .map(|&(id, score)| (id, score, true, false))
                .collect(),
            SearchMode::Keyword => {
                let best = keyword_ranking
                    .first()
                    .map_or(1.0, |k| k.score.max(f32::EPSILON));
                keyword_ranking
                    .iter()
                    .take(query.limit)
                    .map(|k| (k.note_id, k.score / best, false, true))
                    .collect()
            }
            SearchMode::Hybrid => {
                fusion::fuse(&semantic, &keyword_ranking, query.fusion, query.limit)
                    .into_iter()
                    .map(|f| (f.note_id, f.score, f.semantic, f.keyword))
                    .collect()
            }
        };
        self.hits(&ranked, &keyword).await
    }

    /// The semantic ranking: every published vector of `model` of the owner's live
    /// notes, by cosine similarity with `query`, best first, only positive ones. The
    /// vectors come from `note_vectors` (every model's vector of a version: the saga's and
    /// a re-embedding's), so only the configured model's take part; they are read once
    /// per change of the owner's `search_generations` token and kept in memory between
    /// searches ([`vector_cache`]).
    async fn semantic(&self, owner: &str, model: &str, query: &[f32]) -> Result<Vec<(Uuid, f32)>> {
        // The token first: see the cache's module docs for why the order matters.
        let generation: Option<String> =
            sqlx::query_scalar("SELECT generation FROM search_generations WHERE owner = $1")
                .bind(owner.to_owned())
                .fetch_optional(self.pool())
                .await?;
        if let Some(vectors) = self.vector_cache().get(owner, model, generation.as_deref()) {
            metrics::counter!(SEARCH_VECTOR_LOADS, "result" => "hit").increment(1);
            return Ok(vectors.rank(query));
        }
        metrics::counter!(SEARCH_VECTOR_LOADS, "result" => "miss").increment(1);
        let started = Instant::now();
        let vectors = Arc::new(self.published_vectors(owner, model, generation).await?);
        tracing::debug!(
            owner,
            model,
            notes = vectors.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "search vectors read"
        );
        let ranked = vectors.rank(query);
        self.vector_cache().put(owner, model, vectors);
        Ok(ranked)
    }

    /// The owner's published vectors of `model`, read from `note_vectors`.
    async fn published_vectors(
        &self,
        owner: &str,
        model: &str,
        generation: Option<String>,
    ) -> Result<OwnerVectors> {
        let mut rows = sqlx::query(
            "SELECT n.note_id, v.vector_f32 AS embedding_f32, v.vector_json AS embedding_vector \
             FROM notes n JOIN note_vectors v \
               ON v.note_id = n.note_id AND v.version = n.published_version AND v.model = $2 \
             WHERE n.owner = $1 AND n.deleted_at IS NULL \
               AND (v.vector_f32 IS NOT NULL OR v.vector_json IS NOT NULL)",
        )
        .bind(owner.to_owned())
        .bind(model.to_owned())
        .fetch(self.pool());
        let mut vectors = OwnerVectors::new(generation);
        while let Some(row) = rows.try_next().await? {
            let bytes: Option<Vec<u8>> = row.try_get("embedding_f32")?;
            let vector = match bytes {
                Some(bytes) => vector_from_bytes(&bytes),
                // Written before vectors were bytes.
                None => {
                    let json: Option<String> = row.try_get("embedding_vector")?;
                    json.and_then(|json| serde_json::from_str::<Vec<f32>>(&json).ok())
                }
            };
            if let Some(vector) = vector {
                let id: String = row.try_get("note_id")?;
                vectors.push(parse_uuid(&id)?, &vector);
            }
        }
        Ok(vectors)
    }

    /// The keyword ranking: at most [`CANDIDATES`] of the owner's published texts
    /// matching any of `words`, with their scores and snippets.
    async fn keyword(&self, owner: &str, words: &[String]) -> Result<HashMap<Uuid, KeywordMatch>> {
        if words.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = if self.url().starts_with("postgres") {
            // `ts_headline` only for the few rows returned (it re-parses the text).
            sqlx::query(
                "SELECT note_id, score, title, body, ts_headline('english', body, q, \
                   'MaxWords=24, MinWords=10, StartSel=\"\", StopSel=\"\"') AS snippet \
                 FROM (SELECT d.note_id, d.title, d.body, q, \
                         ts_rank_cd(d.tsv, q)::REAL AS score \
                       FROM search_documents d, websearch_to_tsquery('english', $1) q \
                       WHERE d.owner = $2 AND d.tsv @@ q \
                       ORDER BY score DESC, d.note_id LIMIT $3) best",
            )
            .bind(terms::websearch_query(words))
            .bind(owner.to_owned())
            .bind(CANDIDATES as i64)
            .fetch_all(self.pool())
            .await?
        } else {
            // bm25: title words weigh twice body words; lower is better, so negated.
            sqlx::query(
                "SELECT d.note_id, -bm25(search_fts, 2.0, 1.0) AS score, d.title, d.body, \
                   snippet(search_fts, 1, '', '', '…', 24) AS snippet \
                 FROM search_fts JOIN search_documents d ON d.doc_id = search_fts.rowid \
                 WHERE search_fts MATCH $1 AND d.owner = $2 \
                 ORDER BY score DESC, d.note_id LIMIT $3",
            )
            .bind(terms::fts5_query(words))
            .bind(owner.to_owned())
            .bind(CANDIDATES as i64)
            .fetch_all(self.pool())
            .await?
        };
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("note_id")?;
                let score: f64 = match row.try_get::<f64, _>("score") {
                    Ok(score) => score,
                    Err(_) => f64::from(row.try_get::<f32, _>("score")?),
                };
                let title: String = row.try_get("title")?;
                let body: String = row.try_get("body")?;
                Ok((
                    parse_uuid(&id)?,
                    KeywordMatch {
                        score: score as f32,
                        coverage: terms::coverage(words, &format!("{title}\n{body}")),
                        snippet: row.try_get("snippet")?,
                    },
                ))
            })
            .collect()
    }

    /// The hits of `ranked` with their titles, versions and snippets (a keyword match's
    /// snippet, else the start of the published text).
    async fn hits(
        &self,
        ranked: &[(Uuid, f32, bool, bool)],
        keyword: &HashMap<Uuid, KeywordMatch>,
    ) -> Result<Vec<SearchHit>> {
        if ranked.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = notesaga_sql::placeholders(1, ranked.len());
        let sql = format!(
            "SELECT n.note_id, n.title, n.published_version, \
               COALESCE(d.body, t.body) AS body \
             FROM notes n \
             LEFT JOIN search_documents d ON d.note_id = n.note_id \
             LEFT JOIN note_texts t ON t.note_id = n.note_id AND t.version = n.published_version \
             WHERE n.note_id IN ({})",
            placeholders
        );
        let mut select = sqlx::query(&sql);
        for (id, ..) in ranked {
            select = select.bind(id.to_string());
        }
        let mut notes = HashMap::new();
        for row in select.fetch_all(self.pool()).await? {
            let id: String = row.try_get("note_id")?;
            let title: String = row.try_get("title")?;
            let version: Option<i64> = row.try_get("published_version")?;
            let body: Option<String> = row.try_get("body")?;
            notes.insert(parse_uuid(&id)?, (title, version, body));
        }
        Ok(ranked
            .iter()
            .filter_map(|&(note_id, score, semantic, by_keyword)| {
                let (title, version, body) = notes.remove(&note_id)?;
                let mut matched_by = Vec::new();
                if by_keyword {
                    matched_by.push("keyword".to_owned());
                }
                if semantic {
                    matched_by.push("semantic".to_owned());
                }
                let snippet = match keyword.get(&note_id) {
                    Some(m) if !m.snippet.trim().is_empty() => m.snippet.trim().to_owned(),
                    _ => lead(body.as_deref().unwrap_or_default()),
                };
                Some(SearchHit {
                    note_id,
                    title,
                    version: version?,
                    score,
                    matched_by,
                    snippet,
                })
            })
            .collect())
    }
}

/// The start of `text`, at most [`LEAD_CHARS`] characters, cut at a word.
fn lead(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= LEAD_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(LEAD_CHARS).collect();
    let cut = cut
        .rsplit_once(char::is_whitespace)
        .map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end())
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|err| sqlx::Error::Decode(Box::new(err)).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_little_endian_bytes() {
        let v = vec![1.0f32, -0.5, 0.0, f32::MIN_POSITIVE, 3.25e7];
        let bytes = vector_bytes(&v);
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[..4], &[0, 0, 0x80, 0x3f]);
        assert_eq!(vector_from_bytes(&bytes), Some(v));
        assert_eq!(vector_from_bytes(&[]), Some(vec![]));
        assert_eq!(vector_from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn modes_by_name() {
        for (name, mode) in [
            ("hybrid", Some(SearchMode::Hybrid)),
            ("semantic", Some(SearchMode::Semantic)),
            ("keyword", Some(SearchMode::Keyword)),
            ("Hybrid", None),
            ("", None),
        ] {
            assert_eq!(SearchMode::parse(name), mode, "{name}");
        }
    }

    #[test]
    fn leads_cut_at_a_word() {
        assert_eq!(lead("  short text "), "short text");
        let long = "word ".repeat(100);
        let cut = lead(&long);
        assert!(cut.ends_with("word…"), "{cut}");
        assert!(cut.chars().count() <= LEAD_CHARS + 1);
    }
}
