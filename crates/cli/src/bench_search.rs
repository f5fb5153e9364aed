//! `notesaga bench search`: retrieval quality on the judged set of `bench/search/`
//! (recall@1, recall@10, MRR@10 and nDCG@10 of the keyword, hash, MiniLM and hybrid
//! rankings), and the speed figures of search (query embedding, search over many notes
//! of one user on SQLite or PostgreSQL, indexing rate, memory of the model).
//!
//! The notes go into real read stores through the notes projection's own fold
//! (`NoteCreated`, `EmbeddingGenerated`, `NotePublished`), and every ranking comes from
//! [`ReadStore::find`], the code the API serves: what is measured is what users get.
//!
//! The judged queries are split in two halves by their order in the file (even
//! positions tune, odd positions report); `--tune` chooses the fusion's keyword weight
//! on the tuning half alone, and the held-out half's figures are the ones to quote.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use notesaga_embedder::{minilm, BuiltinEmbedder, MiniLm};
use notesaga_events::{
    embedding::{EmbeddingEvent, EmbeddingGenerated},
    notes::{NoteCreated, NotePublished, NotesEvent},
};
use notesaga_log::FlowEvent;
use notesaga_projections::{Fusion, ReadStore, SearchMode, SearchQuery};
use serde::Deserialize;
use uuid::Uuid;

use crate::args::BenchSearchArgs;

/// The owner of every benchmark note.
const OWNER: &str = "bench";
/// Rank cut-off of the metrics.
const K: usize = 10;

/// One note of the corpus.
#[derive(Debug, Clone, Deserialize)]
struct Note {
    title: String,
    body: String,
}

/// One judged query.
#[derive(Debug, Clone, Deserialize)]
struct Judgment {
    id: String,
    /// `paraphrase` or `exact`.
    kind: String,
    query: String,
    /// Titles of the relevant notes.
    relevant: Vec<String>,
}

/// The four metrics of one ranking for one query.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Metrics {
    recall_1: f64,
    recall_10: f64,
    mrr_10: f64,
    ndcg_10: f64,
}

impl Metrics {
    /// The metrics of `ranked` (best first) against `relevant`. Recall@k counts the
    /// relevant notes in the first k over the most there could be (`min(k, relevant)`),
    /// so a perfect ranking scores 1 however many notes are relevant; nDCG uses binary
    /// gains.
    fn of(ranked: &[&str], relevant: &[String]) -> Self {
        let is_relevant = |title: &str| relevant.iter().any(|r| r == title);
        let found = |k: usize| ranked.iter().take(k).filter(|t| is_relevant(t)).count();
        let recall = |k: usize| {
            let most = k.min(relevant.len());
            if most == 0 {
                0.0
            } else {
                found(k) as f64 / most as f64
            }
        };
        let mrr_10 = ranked
            .iter()
            .take(K)
            .position(|t| is_relevant(t))
            .map_or(0.0, |i| 1.0 / (i as f64 + 1.0));
        let dcg: f64 = ranked
            .iter()
            .take(K)
            .enumerate()
            .filter(|(_, t)| is_relevant(t))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(K))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        Self {
            recall_1: recall(1),
            recall_10: recall(K),
            mrr_10,
            ndcg_10: if ideal > 0.0 { dcg / ideal } else { 0.0 },
        }
    }

    /// The mean of `all` (zero when empty).
    fn mean(all: &[Self]) -> Self {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&Self) -> f64| all.iter().map(f).sum::<f64>() / n;
        Self {
            recall_1: sum(|m| m.recall_1),
            recall_10: sum(|m| m.recall_10),
            mrr_10: sum(|m| m.mrr_10),
            ndcg_10: sum(|m| m.ndcg_10),
        }
    }
}

/// The rankings compared.
const SYSTEMS: [&str; 4] = ["keyword", "hash", "minilm", "hybrid"];

/// A read store with the corpus in it, by one embedder.
struct Indexed {
    store: ReadStore,
    model: &'static str,
    titles: HashMap<Uuid, String>,
    _dir: tempfile::TempDir,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a valid entry", path.display(), i + 1))
        })
        .collect()
}

/// The events the pipeline would produce for a published note, folded into `store` in
/// one transaction per `chunk` of notes.
async fn fold(
    store: &ReadStore,
    notes: &[(Uuid, &str, &str, Vec<f32>)],
    model: &str,
) -> Result<()> {
    let mut offset = 0i64;
    for chunk in notes.chunks(500) {
        let mut tx = store.pool().begin().await?;
        for (note_id, title, body, vector) in chunk {
            let at = 1_767_225_600_000;
            let events = [
                FlowEvent::Notes(NotesEvent::NoteCreated(NoteCreated {
                    note_id: *note_id,
                    owner: OWNER.into(),
                    version: 1,
                    title: (*title).into(),
                    body: (*body).into(),
                    occurred_at: at,
                })),
                FlowEvent::Embedding(EmbeddingEvent::EmbeddingGenerated(EmbeddingGenerated {
                    note_id: *note_id,
                    version: 1,
                    model: model.into(),
                    dimensions: vector.len() as i32,
                    vector: vector.clone(),
                    occurred_at: at,
                })),
                FlowEvent::Notes(NotesEvent::NotePublished(NotePublished {
                    note_id: *note_id,
                    version: 1,
                    occurred_at: at,
                })),
            ];
            for event in &events {
                notesaga_projections::notes::apply(&mut tx, event, Uuid::new_v4(), offset).await?;
                offset += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(())
}

/// What the embedding role embeds for a note (the orchestrator's composition).
fn note_text(note: &Note) -> String {
    format!("{}.\n\n{}", note.title, note.body)
}

async fn index(
    corpus: &[Note],
    model: &'static str,
    embed: impl Fn(&str) -> Result<Vec<f32>>,
) -> Result<Indexed> {
    let dir = tempfile::tempdir()?;
    let store = ReadStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("search.db").display()
    ))
    .await?;
    let mut notes = Vec::with_capacity(corpus.len());
    let mut titles = HashMap::new();
    let started = Instant::now();
    for note in corpus {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, note.title.as_bytes());
        notes.push((
            id,
            note.title.as_str(),
            note.body.as_str(),
            embed(&note_text(note))?,
        ));
        titles.insert(id, note.title.clone());
    }
    eprintln!(
        "  {model}: {} notes embedded in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    fold(&store, &notes, model).await?;
    Ok(Indexed {
        store,
        model,
        titles,
        _dir: dir,
    })
}

/// The first [`K`] titles `mode` ranks for `query`.
async fn ranking(
    indexed: &Indexed,
    query: &str,
    vector: Option<&[f32]>,
    mode: SearchMode,
    fusion: Fusion,
) -> Result<Vec<String>> {
    let hits = indexed
        .store
        .find(&SearchQuery {
            owner: OWNER,
            text: query,
            model: indexed.model,
            vector,
            mode,
            limit: K,
            fusion,
        })
        .await?;
    Ok(hits
        .iter()
        .filter_map(|h| indexed.titles.get(&h.note_id).cloned())
        .collect())
}

/// Per query, per system: its metrics.
type Scores = Vec<HashMap<&'static str, Metrics>>;

struct Evaluation {
    hash: Indexed,
    minilm: Indexed,
    judgments: Vec<Judgment>,
    hash_vectors: Vec<Vec<f32>>,
    minilm_vectors: Vec<Vec<f32>>,
}

impl Evaluation {
    async fn hybrid(&self, i: usize, fusion: Fusion) -> Result<Metrics> {
        let j = &self.judgments[i];
        let ranked = ranking(
            &self.minilm,
            &j.query,
            Some(&self.minilm_vectors[i]),
            SearchMode::Hybrid,
            fusion,
        )
        .await?;
        Ok(Metrics::of(&refs(&ranked), &j.relevant))
    }

    async fn scores(&self, fusion: Fusion) -> Result<Scores> {
        let mut scores = Vec::with_capacity(self.judgments.len());
        for (i, j) in self.judgments.iter().enumerate() {
            let q = j.query.as_str();
            let keyword = ranking(&self.hash, q, None, SearchMode::Keyword, fusion).await?;
            let hash = ranking(
                &self.hash,
                q,
                Some(&self.hash_vectors[i]),
                SearchMode::Semantic,
                fusion,
            )
            .await?;
            let minilm = ranking(
                &self.minilm,
                q,
                Some(&self.minilm_vectors[i]),
                SearchMode::Semantic,
                fusion,
            )
            .await?;
            let mut row = HashMap::new();
            row.insert("keyword", Metrics::of(&refs(&keyword), &j.relevant));
            row.insert("hash", Metrics::of(&refs(&hash), &j.relevant));
            row.insert("minilm", Metrics::of(&refs(&minilm), &j.relevant));
            row.insert("hybrid", self.hybrid(i, fusion).await?);
            scores.push(row);
        }
        Ok(scores)
    }
}

fn refs(titles: &[String]) -> Vec<&str> {
    titles.iter().map(String::as_str).collect()
}

/// Whether query `i` is in the tuning half (even positions) or the reporting half.
fn tuning(i: usize) -> bool {
    i.is_multiple_of(2)
}

fn print_table(title: &str, scores: &Scores, judgments: &[Judgment], keep: impl Fn(usize) -> bool) {
    let picked: Vec<usize> = (0..judgments.len()).filter(|&i| keep(i)).collect();
    println!("\n{title} ({} queries)", picked.len());
    println!(
        "  {:<8} {:>9} {:>10} {:>7} {:>8}",
        "ranking", "recall@1", "recall@10", "MRR@10", "nDCG@10"
    );
    for system in SYSTEMS {
        let all: Vec<Metrics> = picked.iter().map(|&i| scores[i][system]).collect();
        let m = Metrics::mean(&all);
        println!(
            "  {:<8} {:>9.3} {:>10.3} {:>7.3} {:>8.3}",
            system, m.recall_1, m.recall_10, m.mrr_10, m.ndcg_10
        );
    }
}

/// The resident memory of this process (`VmRSS`), if the system says.
fn rss() -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub(crate) async fn run(args: BenchSearchArgs) -> Result<()> {
    let corpus: Vec<Note> = read_jsonl(&args.set.join("corpus.jsonl"))?;
    let judgments: Vec<Judgment> = read_jsonl(&args.set.join("judgments.jsonl"))?;
    if judgments.is_empty() || corpus.is_empty() {
        bail!("{}: no corpus or no judgments", args.set.display());
    }
    let model_dir = args
        .model_dir
        .clone()
        .unwrap_or_else(minilm::default_model_dir);
    let before = rss();
    let loading = Instant::now();
    let model = MiniLm::load(&model_dir).with_context(|| {
        format!(
            "cannot load the model from {} (run `make model`)",
            model_dir.display()
        )
    })?;
    println!(
        "model: {} loaded in {:.2} s; resident memory {} before, {} after",
        minilm::MODEL,
        loading.elapsed().as_secs_f64(),
        before.unwrap_or_default(),
        rss().unwrap_or_default()
    );

    // Query embedding latency, one query at a time as the API embeds them.
    let mut minilm_vectors = Vec::with_capacity(judgments.len());
    let mut took = Vec::with_capacity(judgments.len());
    for j in &judgments {
        let started = Instant::now();
        minilm_vectors.push(model.embed(&j.query)?);
        took.push(started.elapsed());
    }
    took.sort();
    println!(
        "query embedding ({} queries, MiniLM): p50 {:.1} ms, p99 {:.1} ms",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
    let hash_vectors: Vec<Vec<f32>> = judgments
        .iter()
        .map(|j| BuiltinEmbedder.embed(&j.query))
        .collect();

    eprintln!("indexing {} notes of {}", corpus.len(), args.set.display());
    let hash = index(&corpus, notesaga_embedder::hash::MODEL, |t| {
        Ok(BuiltinEmbedder.embed(t))
    })
    .await?;
    let minilm = index(&corpus, minilm::MODEL, |t| Ok(model.embed(t)?)).await?;
    println!(
        "resident memory with the model and both indexes: {}",
        rss().unwrap_or_default()
    );
    let evaluation = Evaluation {
        hash,
        minilm,
        judgments,
        hash_vectors,
        minilm_vectors,
    };

    let fusion = if args.tune {
        let mut best = (f64::NEG_INFINITY, Fusion::default());
        println!("\ntuning the keyword weight on the tuning half (mean MRR@10, then nDCG@10):");
        for step in 0..=20 {
            let fusion = Fusion {
                keyword_weight: step as f32 * 0.05,
            };
            let mut all = Vec::new();
            for i in (0..evaluation.judgments.len()).filter(|&i| tuning(i)) {
                all.push(evaluation.hybrid(i, fusion).await?);
            }
            let m = Metrics::mean(&all);
            println!(
                "  w = {:.2}: MRR@10 {:.3}, nDCG@10 {:.3}",
                fusion.keyword_weight, m.mrr_10, m.ndcg_10
            );
            let objective = m.mrr_10 + m.ndcg_10 * 1e-3;
            if objective > best.0 + 1e-9 {
                best = (objective, fusion);
            }
        }
        println!("chosen: w = {:.2}", best.1.keyword_weight);
        best.1
    } else {
        args.keyword_weight
            .map_or_else(Fusion::default, |keyword_weight| Fusion { keyword_weight })
    };

    let scores = evaluation.scores(fusion).await?;
    let judgments = &evaluation.judgments;
    let kind = |i: usize, k: &str| judgments[i].kind == k;
    println!(
        "\nfusion: keyword weight {:.2}; held-out half = odd positions of judgments.jsonl",
        fusion.keyword_weight
    );
    print_table("held-out half, all queries", &scores, judgments, |i| {
        !tuning(i)
    });
    print_table("held-out half, paraphrased", &scores, judgments, |i| {
        !tuning(i) && kind(i, "paraphrase")
    });
    print_table("held-out half, exact-term", &scores, judgments, |i| {
        !tuning(i) && kind(i, "exact")
    });
    print_table("whole set, all queries", &scores, judgments, |_| true);
    print_table("whole set, paraphrased", &scores, judgments, |i| {
        kind(i, "paraphrase")
    });
    print_table("whole set, exact-term", &scores, judgments, |i| {
        kind(i, "exact")
    });
    if args.verbose {
        println!("\nper query (MRR@10: keyword hash minilm hybrid):");
        for (i, j) in judgments.iter().enumerate() {
            let s = &scores[i];
            println!(
                "  {:<4} {:.2} {:.2} {:.2} {:.2}  {}",
                j.id,
                s["keyword"].mrr_10,
                s["hash"].mrr_10,
                s["minilm"].mrr_10,
                s["hybrid"].mrr_10,
                j.query
            );
        }
    }

    if args.speed_notes > 0 {
        speed(&args, &corpus, &model, &evaluation).await?;
    }
    Ok(())
}

/// Throw-away database for the speed figures.
enum Scratch {
    Sqlite(tempfile::TempDir),
    Postgres { server: url::Url, name: String },
}

impl Scratch {
    async fn create(spec: &str) -> Result<Self> {
        if spec == "sqlite" {
            return Ok(Self::Sqlite(tempfile::tempdir()?));
        }
        let server = url::Url::parse(spec).with_context(|| format!("--database-url {spec:?}"))?;
        if !matches!(server.scheme(), "postgres" | "postgresql") {
            bail!("--database-url {spec:?}: expected `sqlite` or a postgres:// server URL");
        }
        let name = format!("notesaga_bench_search_{}", Uuid::new_v4().simple());
        let admin = notesaga_sql::connect(with_database(&server, "postgres").as_str(), 1).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok(Self::Postgres { server, name })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}/speed.db?mode=rwc", dir.path().display()),
            Self::Postgres { server, name } => with_database(server, name).to_string(),
        }
    }

    async fn destroy(self) {
        if let Self::Postgres { server, name } = &self {
            let dropped = async {
                let admin =
                    notesaga_sql::connect(with_database(server, "postgres").as_str(), 1).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await?;
                anyhow::Ok(())
            };
            if let Err(err) = dropped.await {
                eprintln!("warning: cannot drop the scratch database {name}: {err:#}");
            }
        }
    }
}

fn with_database(server: &url::Url, database: &str) -> url::Url {
    let mut url = server.clone();
    url.set_path(&format!("/{database}"));
    url
}

/// Texts of about `size` bytes cut from the corpus, whole verses each.
fn chunks(corpus: &[Note], size: usize, count: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    let mut current = String::new();
    'outer: loop {
        for note in corpus {
            for verse in note.body.lines() {
                current.push_str(verse);
                current.push('\n');
                if current.len() >= size {
                    out.push(std::mem::take(&mut current));
                    if out.len() == count {
                        break 'outer;
                    }
                }
            }
        }
    }
    out
}

/// The speed figures: indexing rate of 1 KB notes, then search over
/// `--speed-notes` notes of one user on each `--database-url`.
async fn speed(
    args: &BenchSearchArgs,
    corpus: &[Note],
    model: &MiniLm,
    evaluation: &Evaluation,
) -> Result<()> {
    let sample = chunks(corpus, 1024, 100);
    let started = Instant::now();
    let mut sample_vectors = Vec::with_capacity(sample.len());
    for text in &sample {
        sample_vectors.push(model.embed(text)?);
    }
    let rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "\nindexing: {rate:.1} embeddings/s (MiniLM, {} notes of ~1 KB, one at a time)",
        sample.len()
    );

    let texts = chunks(corpus, 1024, args.speed_notes);
    for spec in &args.database_url {
        let scratch = Scratch::create(spec).await?;
        let result = async {
            let store = ReadStore::connect(&scratch.url()).await?;
            // Real vectors of real 1 KB texts would take minutes to embed; cycling the
            // sample's keeps the search's work (a 384-float dot product per note) the same.
            let notes: Vec<(Uuid, &str, &str, Vec<f32>)> = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    (
                        Uuid::new_v4(),
                        "note",
                        text.as_str(),
                        sample_vectors[i % sample_vectors.len()].clone(),
                    )
                })
                .collect();
            let started = Instant::now();
            fold(&store, &notes, minilm::MODEL).await?;
            eprintln!(
                "  {} notes folded in {:.1} s",
                notes.len(),
                started.elapsed().as_secs_f64()
            );
            let label = if spec == "sqlite" { "SQLite" } else { "PostgreSQL" };
            // The API's store keeps each user's vectors in memory between searches
            // (`NOTESAGA_SEARCH_CACHE_MB`); the first search after a change reads them.
            // Measured on a store without the cache too, side by side.
            let uncached = ReadStore::connect(&scratch.url())
                .await?
                .with_vector_cache(0);
            let cold = Instant::now();
            let first = &evaluation.judgments[0];
            store
                .find(&SearchQuery {
                    owner: OWNER,
                    text: &first.query,
                    model: minilm::MODEL,
                    vector: Some(&evaluation.minilm_vectors[0]),
                    mode: SearchMode::Semantic,
                    limit: K,
                    fusion: Fusion::default(),
                })
                .await?;
            println!(
                "search over {} notes of one user, {label}: first semantic search (reads the vectors into memory) {:.1} ms",
                notes.len(),
                cold.elapsed().as_secs_f64() * 1000.0
            );
            for (cache, store) in [("cached", &store), ("no cache", &uncached)] {
                for mode in [SearchMode::Hybrid, SearchMode::Semantic, SearchMode::Keyword] {
                    let mut took = Vec::new();
                    for (j, vector) in evaluation
                        .judgments
                        .iter()
                        .zip(&evaluation.minilm_vectors)
                    {
                        let started = Instant::now();
                        store
                            .find(&SearchQuery {
                                owner: OWNER,
                                text: &j.query,
                                model: minilm::MODEL,
                                vector: Some(vector),
                                mode,
                                limit: K,
                                fusion: Fusion::default(),
                            })
                            .await?;
                        took.push(started.elapsed());
                    }
                    took.sort();
                    println!(
                        "search over {} notes of one user, {label}, {mode:?} ({cache}): p50 {:.1} ms, p99 {:.1} ms ({} queries)",
                        notes.len(),
                        percentile(&took, 0.5),
                        percentile(&took, 0.99),
                        took.len()
                    );
                }
            }
            uncached.pool().close().await;
            store.pool().close().await;
            anyhow::Ok(())
        }
        .await;
        scratch.destroy().await;
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(titles: &[&str]) -> Vec<String> {
        titles.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn metrics_of_rankings() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let perfect = Metrics::of(&["a", "b", "x"], &rel(&["a", "b"]));
        assert_eq!(
            perfect,
            Metrics {
                recall_1: 1.0,
                recall_10: 1.0,
                mrr_10: 1.0,
                ndcg_10: 1.0
            }
        );
        let second = Metrics::of(&["x", "a"], &rel(&["a"]));
        assert!(close(second.recall_1, 0.0) && close(second.recall_10, 1.0));
        assert!(close(second.mrr_10, 0.5));
        assert!(close(second.ndcg_10, 1.0 / 3f64.log2()));
        let missed = Metrics::of(&["x", "y"], &rel(&["a"]));
        assert_eq!(missed, Metrics::default());
        let eleventh: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
        let mut ranked = refs(&eleventh);
        ranked.push("a");
        assert_eq!(Metrics::of(&ranked, &rel(&["a"])), Metrics::default());
        let half = Metrics::of(&["a", "x"], &rel(&["a", "b"]));
        assert!(close(half.recall_10, 0.5) && close(half.recall_1, 1.0));
        let mean = Metrics::mean(&[perfect, missed]);
        assert!(close(mean.mrr_10, 0.5) && close(mean.ndcg_10, 0.5));
    }

    #[test]
    fn halves_alternate() {
        let picked: Vec<bool> = (0..4).map(tuning).collect();
        assert_eq!(picked, vec![true, false, true, false]);
    }

    #[test]
    fn chunks_are_whole_verses_of_about_the_size() {
        let corpus = vec![Note {
            title: "t".into(),
            body: "1 aaaa\n2 bbbb\n3 cccc".into(),
        }];
        let out = chunks(&corpus, 10, 3);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], "1 aaaa\n2 bbbb\n");
        assert!(out.iter().all(|c| c.len() >= 10));
    }
}
