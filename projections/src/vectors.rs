//! Every model's vector of a note version (`note_vectors`), and what `notesaga reembed`
//! reads of them (issue 13, "Changing models").
//!
//! The fold keeps one row per (note, version, model) from every `EmbeddingGenerated`, the
//! saga's and a re-embedding's alike; the first copy in log order wins, as everywhere in
//! the fold. Search reads the configured model's row of the published version
//! ([`crate::search`]), so a re-embedding to another model changes no result until the
//! operator switches the API's provider. An `EmbeddingDeleted` removes the version's rows
//! of every model, as the embedding store does.
//!
//! [`ReadStore::published_notes`] lists the live, published notes with the models that
//! have a vector of their published version; [`to_reembed`] and [`coverage`] are the pure
//! decisions made on that list (table-tested).

use std::collections::{BTreeMap, BTreeSet};

use notesaga_events::embedding::EmbeddingGenerated;
use sqlx::{Any, Row as _, Transaction};
use uuid::Uuid;

use crate::{ReadStore, Result};

/// Keeps `event`'s vector under its model; a second copy of the same (note, version,
/// model) changes nothing.
pub(crate) async fn record(
    tx: &mut Transaction<'static, Any>,
    event: &EmbeddingGenerated,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO note_vectors (note_id, version, model, dimensions, vector_f32) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (note_id, version, model) DO NOTHING",
    )
    .bind(event.note_id.to_string())
    .bind(event.version)
    .bind(event.model.clone())
    .bind(i64::from(event.dimensions))
    .bind(crate::search::vector_bytes(&event.vector))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets every model's vector of `version` (`None`: of every version of the note).
pub(crate) async fn forget(
    tx: &mut Transaction<'static, Any>,
    note_id: Uuid,
    version: Option<i64>,
) -> Result<()> {
    match version {
        Some(version) => {
            sqlx::query("DELETE FROM note_vectors WHERE note_id = $1 AND version = $2")
                .bind(note_id.to_string())
                .bind(version)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM note_vectors WHERE note_id = $1")
                .bind(note_id.to_string())
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(())
}

/// A live note's published version, as a re-embedding needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedNote {
    /// The note.
    pub note_id: Uuid,
    /// Its owner.
    pub owner: String,
    /// The published version.
    pub version: i64,
    /// The published version's title and body, when the read store holds them (every
    /// version published since `note_texts` exists does).
    pub text: Option<(String, String)>,
    /// The models with a vector of the published version.
    pub models: BTreeSet<String>,
}

impl ReadStore {
    /// The live notes with a published version (of `owner`, or of everyone), ordered by
    /// note id, each with its published text and the models that have a vector of it.
    pub async fn published_notes(&self, owner: Option<&str>) -> Result<Vec<PublishedNote>> {
        // The text: `note_texts` of the published version, else the search index's copy
        // (which only ever holds the published version).
        let owner_filter = if owner.is_some() {
            " AND n.owner = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT n.note_id, n.owner, n.published_version, \
               COALESCE(t.title, d.title) AS title, COALESCE(t.body, d.body) AS body \
             FROM notes n \
             LEFT JOIN note_texts t ON t.note_id = n.note_id AND t.version = n.published_version \
             LEFT JOIN search_documents d ON d.note_id = n.note_id AND d.version = n.published_version \
             WHERE n.deleted_at IS NULL AND n.published_version IS NOT NULL{owner_filter} \
             ORDER BY n.note_id"
        );
        let mut select = sqlx::query(&sql);
        if let Some(owner) = owner {
            select = select.bind(owner.to_owned());
        }
        let mut notes = Vec::new();
        for row in select.fetch_all(self.pool()).await? {
            let id: String = row.try_get("note_id")?;
            let title: Option<String> = row.try_get("title")?;
            let body: Option<String> = row.try_get("body")?;
            notes.push(PublishedNote {
                note_id: parse_uuid(&id)?,
                owner: row.try_get("owner")?,
                version: row.try_get("published_version")?,
                text: title.zip(body),
                models: BTreeSet::new(),
            });
        }
        let mut models: BTreeMap<Uuid, BTreeSet<String>> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT v.note_id, v.model FROM note_vectors v \
             JOIN notes n ON n.note_id = v.note_id AND n.published_version = v.version \
             WHERE n.deleted_at IS NULL",
        )
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            let id: String = row.try_get("note_id")?;
            models
                .entry(parse_uuid(&id)?)
                .or_default()
                .insert(row.try_get("model")?);
        }
        for note in &mut notes {
            if let Some(found) = models.remove(&note.note_id) {
                note.models = found;
            }
        }
        Ok(notes)
    }

    /// The dimensions of `model`'s vector of each (note, version) asked for that has one.
    pub async fn vector_dimensions(
        &self,
        model: &str,
        versions: &[(Uuid, i64)],
    ) -> Result<BTreeMap<(Uuid, i64), i64>> {
        let wanted: BTreeMap<Uuid, BTreeSet<i64>> =
            versions
                .iter()
                .fold(BTreeMap::new(), |mut wanted, (note_id, version)| {
                    wanted.entry(*note_id).or_default().insert(*version);
                    wanted
                });
        let ids: Vec<&Uuid> = wanted.keys().collect();
        let mut found = BTreeMap::new();
        // Bounded statements: one per chunk of notes, never one per note.
        for chunk in ids.chunks(500) {
            let placeholders = notesaga_sql::placeholders(2, chunk.len());
            let sql = format!(
                "SELECT note_id, version, dimensions FROM note_vectors \
                 WHERE model = $1 AND note_id IN ({})",
                placeholders
            );
            let mut select = sqlx::query(&sql).bind(model.to_owned());
            for note_id in chunk {
                select = select.bind(note_id.to_string());
            }
            for row in select.fetch_all(self.pool()).await? {
                let id: String = row.try_get("note_id")?;
                let key = (parse_uuid(&id)?, row.try_get::<i64, _>("version")?);
                if wanted.get(&key.0).is_some_and(|v| v.contains(&key.1)) {
                    found.insert(key, row.try_get("dimensions")?);
                }
            }
        }
        Ok(found)
    }
}

/// What a re-embedding to `model` does with the published notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Notes whose published version has no vector of `model` yet: re-embed them.
    pub todo: Vec<&'a PublishedNote>,
    /// Notes that have one already (an earlier, interrupted run did them).
    pub done: usize,
    /// Notes whose published text the read store does not hold: they cannot be sent.
    pub without_text: Vec<&'a PublishedNote>,
}

/// Which of `notes` a re-embedding to `model` sends (so a run interrupted half way is
/// resumed by running it again).
pub fn to_reembed<'a>(notes: &'a [PublishedNote], model: &str) -> Plan<'a> {
    let mut plan = Plan::default();
    for note in notes {
        if note.models.contains(model) {
            plan.done += 1;
        } else if note.text.is_none() {
            plan.without_text.push(note);
        } else {
            plan.todo.push(note);
        }
    }
    plan
}

/// How many of `notes` have a vector of each model (`model` listed even with none), by
/// model name.
pub fn coverage(notes: &[PublishedNote], model: Option<&str>) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(model) = model {
        counts.insert(model.to_owned(), 0);
    }
    for note in notes {
        for model in &note.models {
            *counts.entry(model.clone()).or_default() += 1;
        }
    }
    counts
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|err| sqlx::Error::Decode(Box::new(err)).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: u128, text: bool, models: &[&str]) -> PublishedNote {
        PublishedNote {
            note_id: Uuid::from_u128(n),
            owner: "o".into(),
            version: 1,
            text: text.then(|| ("t".to_owned(), "b".to_owned())),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn which_notes_are_re_embedded() {
        let notes = [
            note(1, true, &["old"]),
            note(2, true, &["old", "new"]),
            note(3, false, &["old"]),
            note(4, true, &[]),
            note(5, false, &["new"]),
        ];
        let ids =
            |list: &[&PublishedNote]| list.iter().map(|n| n.note_id.as_u128()).collect::<Vec<_>>();
        for (model, todo, done, without_text) in [
            ("new", vec![1, 4], 2, vec![3]),
            ("old", vec![4], 3, vec![5]),
            ("other", vec![1, 2, 4], 0, vec![3, 5]),
        ] {
            let plan = to_reembed(&notes, model);
            assert_eq!(ids(&plan.todo), todo, "{model}: todo");
            assert_eq!(plan.done, done, "{model}: done");
            assert_eq!(
                ids(&plan.without_text),
                without_text,
                "{model}: without text"
            );
        }
        let empty = to_reembed(&[], "new");
        assert!(empty.todo.is_empty() && empty.done == 0 && empty.without_text.is_empty());
    }

    #[test]
    fn coverage_counts_notes_per_model() {
        let notes = [
            note(1, true, &["old"]),
            note(2, true, &["old", "new"]),
            note(3, true, &[]),
        ];
        let counts = coverage(&notes, None);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![("new".to_owned(), 1), ("old".to_owned(), 2)]
        );
        let counts = coverage(&notes, Some("third"));
        assert_eq!(counts.get("third"), Some(&0));
        assert_eq!(counts.len(), 3);
    }
}
