//! Issue 13, step 1: does scoring a note by the best of its window vectors (passage
//! retrieval) beat its single mean vector on the judged set of `bench/search/`? Prints
//! MRR@10 of both semantic rankings per query and per kind (whole set and held-out half,
//! the odd positions, as `notesaga bench search` splits them), computed in memory with
//! the same note text, model and cut-off as the bench; the mean's figures equal the
//! bench's `minilm` row. Minutes of model time (about 15 on a busy 2-core machine), so
//! ignored:
//!
//! ```sh
//! cargo test -p notesaga-embedder --test window_check -- --ignored --nocapture
//! ```
//!
//! Result and decision: `docs/benchmarks.md`, search section; raw output in
//! `bench/search/window-check-2026-12-05-debug.txt`.

use std::path::PathBuf;

use notesaga_embedder::{cosine, minilm, MiniLm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Note {
    title: String,
    body: String,
}

#[derive(Deserialize)]
struct Judgment {
    id: String,
    kind: String,
    query: String,
    relevant: Vec<String>,
}

fn jsonl<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mrr(scores: &[(f32, &str)], relevant: &[String]) -> f64 {
    let mut ranked: Vec<&(f32, &str)> = scores.iter().filter(|s| s.0 > 0.0).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .iter()
        .take(10)
        .position(|(_, t)| relevant.iter().any(|r| r == t))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// The judged set of `bench/search/` (notes, then queries) and the model, from
/// `NOTESAGA_EMBEDDING_MODEL_DIR` or where `make model` puts it.
fn judged_set() -> (Vec<Note>, Vec<Judgment>, MiniLm) {
    let set = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/search");
    let dir = std::env::var_os("NOTESAGA_EMBEDDING_MODEL_DIR")
        .map_or_else(minilm::default_model_dir, PathBuf::from);
    (
        jsonl(&set.join("corpus.jsonl")),
        jsonl(&set.join("judgments.jsonl")),
        MiniLm::load(&dir).unwrap(),
    )
}

#[test]
#[ignore = "minutes of model time: run by hand"]
fn max_over_windows_against_mean() {
    let (corpus, judgments, model) = judged_set();
    let started = std::time::Instant::now();
    let mut embedded = Vec::new();
    let mut windows = 0;
    for (i, note) in corpus.iter().enumerate() {
        let e = model
            .embed_windows(&format!("{}.\n\n{}", note.title, note.body))
            .unwrap();
        windows += e.windows.len().max(1);
        embedded.push(e);
        if i % 50 == 0 {
            eprintln!("{i} notes, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    eprintln!(
        "{} notes, {windows} windows embedded in {:.0} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
    let mut sums: std::collections::BTreeMap<(String, bool, &str), (f64, usize)> =
        Default::default();
    for (qi, j) in judgments.iter().enumerate() {
        let q = model.embed(&j.query).unwrap();
        let mean: Vec<(f32, &str)> = embedded
            .iter()
            .zip(&corpus)
            .map(|(e, n)| (cosine(&q, &e.vector), n.title.as_str()))
            .collect();
        let max: Vec<(f32, &str)> = embedded
            .iter()
            .zip(&corpus)
            .map(|(e, n)| {
                // The best window; a note of one window has only its vector.
                let best = if e.windows.is_empty() {
                    cosine(&q, &e.vector)
                } else {
                    e.windows
                        .iter()
                        .map(|w| cosine(&q, w))
                        .fold(f32::MIN, f32::max)
                };
                (best, n.title.as_str())
            })
            .collect();
        let (m0, m1) = (mrr(&mean, &j.relevant), mrr(&max, &j.relevant));
        println!("{:<4} mean {m0:.2} max {m1:.2}  {}", j.id, j.query);
        for half in [false, true] {
            if half && qi % 2 == 0 {
                continue;
            }
            for (name, v) in [("mean", m0), ("max", m1)] {
                let e = sums.entry((j.kind.clone(), half, name)).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    for ((kind, held_out, name), (sum, n)) in &sums {
        println!(
            "{kind:<10} {:<9} {name:<4} MRR@10 {:.3} ({n} queries)",
            if *held_out { "held-out" } else { "whole" },
            sum / *n as f64
        );
    }
}

/// Issue 13, step 2: windows of 128 tokens (the length all-MiniLM-L6-v2 was fine-tuned
/// on) against the stored 256, both scored by the note's mean vector as search scores
/// it; the 128-token best window is printed beside them. Same set, halves and cut-off
/// as above; about twice its model time, so ignored:
///
/// ```sh
/// cargo test -p notesaga-embedder --test window_check window_size -- --ignored --nocapture
/// ```
#[test]
#[ignore = "minutes of model time: run by hand"]
fn window_size_128_against_256() {
    let (corpus, judgments, model) = judged_set();
    let sizes = [minilm::WINDOW_TOKENS, 128];
    let embedded: Vec<Vec<minilm::Embedding>> = sizes
        .iter()
        .map(|&size| {
            let started = std::time::Instant::now();
            let mut windows = 0;
            let notes: Vec<minilm::Embedding> = corpus
                .iter()
                .enumerate()
                .map(|(i, note)| {
                    let e = model
                        .embed_with_window(&format!("{}.\n\n{}", note.title, note.body), size)
                        .unwrap();
                    windows += e.windows.len().max(1);
                    if i % 100 == 0 {
                        eprintln!(
                            "{size}: {i} notes, {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    e
                })
                .collect();
            eprintln!(
                "{size}-token windows: {} notes, {windows} windows embedded in {:.0} s",
                corpus.len(),
                started.elapsed().as_secs_f64()
            );
            notes
        })
        .collect();
    let ranking = |q: &[f32], notes: &[minilm::Embedding], best: bool| -> Vec<(f32, String)> {
        notes
            .iter()
            .zip(&corpus)
            .map(|(e, n)| {
                let score = if best && !e.windows.is_empty() {
                    e.windows
                        .iter()
                        .map(|w| cosine(q, w))
                        .fold(f32::MIN, f32::max)
                } else {
                    cosine(q, &e.vector)
                };
                (score, n.title.clone())
            })
            .collect()
    };
    let columns = ["mean256", "mean128", "best128"];
    let mut sums: std::collections::BTreeMap<(String, &str, &str), (f64, usize)> =
        Default::default();
    for (qi, j) in judgments.iter().enumerate() {
        let q = model.embed(&j.query).unwrap();
        let figures = [
            ranking(&q, &embedded[0], false),
            ranking(&q, &embedded[1], false),
            ranking(&q, &embedded[1], true),
        ]
        .map(|scores| {
            let scores: Vec<(f32, &str)> = scores.iter().map(|(s, t)| (*s, t.as_str())).collect();
            mrr(&scores, &j.relevant)
        });
        println!(
            "{:<4} {}  {}",
            j.id,
            columns
                .iter()
                .zip(figures)
                .map(|(c, v)| format!("{c} {v:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            j.query
        );
        let half = if qi % 2 == 1 { "held-out" } else { "tuning" };
        for (column, v) in columns.iter().zip(figures) {
            for part in ["whole", half] {
                let e = sums.entry((j.kind.clone(), part, column)).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    for ((kind, part, column), (sum, n)) in &sums {
        println!(
            "{kind:<10} {part:<9} {column:<8} MRR@10 {:.3} ({n} queries)",
            sum / *n as f64
        );
    }
}
