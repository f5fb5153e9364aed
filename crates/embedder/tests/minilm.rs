//! all-MiniLM-L6-v2 against sentence-transformers: our vectors of the sentences in
//! `fixtures/minilm_reference.json` (made by `fixtures/make_reference.py` with pinned
//! sentence-transformers) must point the same way (cosine ≥ 0.999). Needs the model
//! (`make model`, which `make test` runs first; `NOTESAGA_EMBEDDING_MODEL_DIR` points
//! elsewhere).

use std::path::PathBuf;

use notesaga_embedder::{cosine, minilm, MiniLm};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn model() -> MiniLm {
    let dir = std::env::var_os("NOTESAGA_EMBEDDING_MODEL_DIR")
        .map_or_else(minilm::default_model_dir, PathBuf::from);
    MiniLm::load(&dir).unwrap_or_else(|err| {
        panic!(
            "the model is not in {} ({err}): run `make model`",
            dir.display()
        )
    })
}

#[test]
fn vectors_match_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    assert!(reference.sentences.len() >= 10);
    let model = model();
    for sentence in &reference.sentences {
        let ours = model.embed(&sentence.text).unwrap();
        assert_eq!(ours.len(), minilm::DIMENSIONS);
        let windows = model.windows(&sentence.text).unwrap();
        assert_eq!(windows.len(), 1, "{:?}", sentence.text);
        assert_eq!(windows[0].len(), sentence.tokens, "{:?}", sentence.text);
        let similarity = cosine(&ours, &sentence.vector);
        assert!(
            similarity >= 0.999,
            "{:?}: cosine {similarity}",
            sentence.text
        );
    }
}

#[test]
fn paraphrases_are_closer_than_unrelated_text() {
    let model = model();
    let note = model
        .embed("And David put his hand in his bag, and took thence a stone, and slang it, and smote the Philistine in his forehead.")
        .unwrap();
    let paraphrase = model.embed("boy kills a giant with a sling").unwrap();
    let unrelated = model
        .embed("quarterly tax forms for small businesses")
        .unwrap();
    assert!(cosine(&note, &paraphrase) > cosine(&note, &unrelated) + 0.1);
}

/// A note of two passages, each longer than a window: its first passage and the whole.
fn long_note() -> (String, String) {
    let head = "And the LORD said unto Moses, Stretch out thine hand over the sea, that the waters may come again upon the Egyptians. ".repeat(12);
    let tail = "Knead the dough, let it rise overnight, then bake the sourdough loaf in a hot oven until the crust is brown. ".repeat(12);
    let whole = format!("{head}{tail}");
    (head, whole)
}

/// A note longer than one window is represented whole: its end moves its vector, which
/// a model reading only the first 256 tokens would never see.
#[test]
fn long_notes_count_every_window() {
    let model = model();
    let (head, whole) = long_note();
    let windows = model.windows(&whole).unwrap();
    assert!(windows.len() >= 2, "{} windows", windows.len());
    assert!(windows.iter().all(|w| w.len() <= minilm::WINDOW_TOKENS));
    let vector = model.embed(&whole).unwrap();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    let baking = model.embed("baking bread").unwrap();
    let head_only = model.embed(&head).unwrap();
    assert!(
        cosine(&vector, &baking) > cosine(&head_only, &baking) + 0.1,
        "whole {} head {}",
        cosine(&vector, &baking),
        cosine(&head_only, &baking)
    );
}

/// Passage retrieval: a long note's windows come with its vector, one a window, in text
/// order; the best window matches a query about one passage better than the note's mean
/// does. A text of one window has no windows (its vector is its window's).
#[test]
fn long_notes_keep_their_windows_vectors() {
    let model = model();
    let (_, whole) = long_note();
    let embedding = model.embed_windows(&whole).unwrap();
    assert_eq!(embedding.vector, model.embed(&whole).unwrap());
    assert_eq!(
        embedding.windows.len(),
        model.windows(&whole).unwrap().len()
    );
    assert!(embedding.windows.len() >= 2);
    for window in &embedding.windows {
        assert_eq!(window.len(), minilm::DIMENSIONS);
        let norm = window.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    let baking = model.embed("baking bread").unwrap();
    let best = embedding
        .windows
        .iter()
        .map(|w| cosine(w, &baking))
        .fold(f32::MIN, f32::max);
    assert!(
        best > cosine(&embedding.vector, &baking),
        "best window {best}, mean {}",
        cosine(&embedding.vector, &baking)
    );
    // The last window is the baking one, the first the sea one.
    let last = cosine(embedding.windows.last().unwrap(), &baking);
    let first = cosine(&embedding.windows[0], &baking);
    assert!(last > first + 0.1, "last {last}, first {first}");

    let short = model
        .embed_windows("boy kills a giant with a sling")
        .unwrap();
    assert!(short.windows.is_empty());
    assert_eq!(
        short.vector,
        model.embed("boy kills a giant with a sling").unwrap()
    );
}
