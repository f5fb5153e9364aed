//! The built-in (hash) embedder, provider `builtin`: deterministic feature hashing, no model, no network.
//!
//! It is *lexical*, not semantic: each lower-cased word and each pair of adjacent words
//! is hashed (FNV-1a, stable across runs and machines) to one of [`DIMENSIONS`] buckets
//! with a hashed sign, and the vector is L2-normalised, so cosine similarity measures
//! shared vocabulary. It exists so the single node needs no model download; a real
//! embedding model plugs in behind the same command and reply.

/// Length of the vectors it produces.
pub const DIMENSIONS: usize = 256;
/// The model name written on `EmbeddingGenerated`.
pub const MODEL: &str = "notesaga-builtin-hash-v1";

/// The deterministic feature-hashing embedder.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinEmbedder;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl BuiltinEmbedder {
    /// The model name.
    pub fn model(&self) -> &'static str {
        MODEL
    }

    /// Embeds `text`; an text without any word gives the zero vector.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut vector = vec![0f32; DIMENSIONS];
        let mut add = |feature: &str, weight: f32| {
            let hash = fnv1a(feature.as_bytes());
            let bucket = (hash % DIMENSIONS as u64) as usize;
            let sign = if (hash >> 63) == 0 { 1.0 } else { -1.0 };
            vector[bucket] += sign * weight;
        };
        for word in &words {
            add(word, 1.0);
        }
        for pair in words.windows(2) {
            add(&format!("{} {}", pair[0], pair[1]), 0.5);
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

/// Cosine similarity of two vectors of the same length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norms == 0.0 {
        0.0
    } else {
        dot / norms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_normalised() {
        let e = BuiltinEmbedder;
        let a = e.embed("The mitochondria is the powerhouse of the cell");
        assert_eq!(a, e.embed("The mitochondria is the powerhouse of the cell"));
        assert_eq!(a.len(), DIMENSIONS);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(e.embed("  ,.; ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn shared_words_score_higher() {
        let e = BuiltinEmbedder;
        let cell = e.embed("cell biology: the mitochondria and the cell membrane");
        let similar = e.embed("mitochondria in the cell");
        let other = e.embed("Roman history and Julius Caesar");
        assert!(cosine(&cell, &similar) > cosine(&cell, &other));
        assert!((cosine(&cell, &cell) - 1.0).abs() < 1e-5);
    }
}
