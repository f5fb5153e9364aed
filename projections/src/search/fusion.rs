//! How the keyword and the vector rankings become one (pure: no SQL).
//!
//! Plain reciprocal rank fusion lets a weak keyword match (a note sharing one common word
//! with the query) outvote a strong semantic match, because it sees ranks, not how good
//! a match is. This fusion keeps the scores, each brought to 0..1 (cosines and BM25
//! values are on unrelated scales): the semantic ones min-max normalised over the
//! semantic candidates (cosines of unrelated texts are far from 0, so only their spread
//! means anything), the keyword ones divided by the best (a BM25 score is 0 for no
//! match, so a weak match stays weak but above none) and multiplied by the square of the
//! note's coverage of the query's content words ([`super::terms::coverage`]). Without
//! that, a paraphrase ("teenager slays a huge warrior") whose best keyword match shares
//! one word with a note would give that note the full keyword weight: dividing by the
//! best says how a match compares with the others, not whether any is good. A note's
//! fused score is the weighted sum
//! `(1 - w) · semantic + w · keyword`, a note missing from a ranking scoring 0 there.
//! The weight `w` was chosen on the tuning half of the judged set (`bench/search/`,
//! `notesaga bench search --tune`); see docs/benchmarks.md.

use std::collections::HashMap;

use uuid::Uuid;

/// Candidates each ranking contributes to the fusion.
pub const CANDIDATES: usize = 50;

/// The fusion's parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// Weight of the keyword ranking, 0..=1 (the semantic ranking gets the rest).
    pub keyword_weight: f32,
}

impl Default for Fusion {
    /// The weight tuned on the judged set's tuning half.
    fn default() -> Self {
        Self {
            keyword_weight: 0.8,
        }
    }
}

/// One note of the keyword ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeywordScore {
    /// The note.
    pub note_id: Uuid,
    /// The engine's relevance, higher is better, 0 for no match.
    pub score: f32,
    /// The share of the query's content words the note holds, 0..=1.
    pub coverage: f32,
}

/// One note of the fused ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// The note.
    pub note_id: Uuid,
    /// The fused score, 0..=1.
    pub score: f32,
    /// Among the semantic ranking's candidates.
    pub semantic: bool,
    /// Matched the query's words.
    pub keyword: bool,
}

/// `scores` normalised to 0..=1: min-max, or divided by the best when `from_zero`; a
/// ranking of equal scores (one note, say) is all 1.
fn normalised(scores: &[(Uuid, f32)], from_zero: bool) -> HashMap<Uuid, f32> {
    let max = scores.iter().map(|s| s.1).fold(f32::NEG_INFINITY, f32::max);
    let min = if from_zero {
        0.0
    } else {
        scores.iter().map(|s| s.1).fold(f32::INFINITY, f32::min)
    };
    let span = max - min;
    scores
        .iter()
        .map(|&(id, score)| {
            let n = if span > f32::EPSILON {
                (score - min) / span
            } else {
                1.0
            };
            (id, n)
        })
        .collect()
}

/// Fuses `semantic` and `keyword` (each best first, at most [`CANDIDATES`] used): best
/// first, ties broken by note id so the order is stable; at most `limit`.
pub fn fuse(
    semantic: &[(Uuid, f32)],
    keyword: &[KeywordScore],
    fusion: Fusion,
    limit: usize,
) -> Vec<Fused> {
    let semantic = &semantic[..semantic.len().min(CANDIDATES)];
    let keyword = &keyword[..keyword.len().min(CANDIDATES)];
    let w = fusion.keyword_weight.clamp(0.0, 1.0);
    let sem = normalised(semantic, false);
    let relevance: Vec<(Uuid, f32)> = keyword.iter().map(|k| (k.note_id, k.score)).collect();
    let mut kw = normalised(&relevance, true);
    for k in keyword {
        if let Some(n) = kw.get_mut(&k.note_id) {
            *n *= k.coverage.clamp(0.0, 1.0).powi(2);
        }
    }
    let mut fused: Vec<Fused> = semantic
        .iter()
        .map(|s| s.0)
        .chain(keyword.iter().map(|k| k.note_id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| {
            let (s, k) = (sem.get(&id), kw.get(&id));
            Fused {
                note_id: id,
                score: (1.0 - w) * s.copied().unwrap_or(0.0) + w * k.copied().unwrap_or(0.0),
                semantic: s.is_some(),
                keyword: k.is_some(),
            }
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.note_id.cmp(&b.note_id)));
    fused.truncate(limit);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Keyword matches holding every word of the query.
    fn kw(matches: &[(Uuid, f32)]) -> Vec<KeywordScore> {
        matches
            .iter()
            .map(|&(note_id, score)| KeywordScore {
                note_id,
                score,
                coverage: 1.0,
            })
            .collect()
    }

    #[test]
    fn strong_semantic_match_beats_weak_keyword_matches() {
        // Note 1 is what the query means; notes 2 and 3 share a common word with it.
        // Each holds one of the query's four content words.
        let semantic = [(id(1), 0.62), (id(4), 0.30), (id(2), 0.21), (id(3), 0.20)];
        let keyword: Vec<KeywordScore> = [(id(2), 3.1), (id(3), 3.0)]
            .map(|(note_id, score)| KeywordScore {
                note_id,
                score,
                coverage: 0.25,
            })
            .to_vec();
        let fused = fuse(&semantic, &keyword, Fusion::default(), 10);
        assert_eq!(fused[0].note_id, id(1));
        assert!(fused[0].semantic && !fused[0].keyword);
    }

    #[test]
    fn exact_term_match_rises_to_the_top() {
        // "Goliath": note 5 names him; semantically it is only second.
        let semantic = [(id(6), 0.41), (id(5), 0.39), (id(7), 0.10)];
        let keyword = [(id(5), 7.5)];
        let fused = fuse(&semantic, &kw(&keyword), Fusion::default(), 10);
        assert_eq!(fused[0].note_id, id(5));
        assert!(fused[0].semantic && fused[0].keyword);
    }

    #[test]
    fn weights_at_the_ends_give_each_ranking_alone() {
        let semantic = [(id(1), 0.9), (id(2), 0.5), (id(3), 0.1)];
        let keyword = [(id(3), 9.0), (id(2), 1.0)];
        let order = |w: f32| -> Vec<Uuid> {
            fuse(&semantic, &kw(&keyword), Fusion { keyword_weight: w }, 10)
                .iter()
                .map(|f| f.note_id)
                .collect()
        };
        assert_eq!(order(0.0), vec![id(1), id(2), id(3)]);
        assert_eq!(order(1.0)[..2], [id(3), id(2)]);
    }

    #[test]
    fn limit_ties_and_empty_inputs() {
        assert!(fuse(&[], &[], Fusion::default(), 10).is_empty());
        let only = fuse(&[], &kw(&[(id(9), 2.0)]), Fusion::default(), 10);
        assert_eq!(only.len(), 1);
        assert!(only[0].keyword && !only[0].semantic);
        let tied = [(id(2), 0.5), (id(1), 0.5), (id(3), 0.5)];
        let fused = fuse(&tied, &[], Fusion::default(), 2);
        assert_eq!(
            fused.iter().map(|f| f.note_id).collect::<Vec<_>>(),
            vec![id(1), id(2)]
        );
    }

    #[test]
    fn a_best_keyword_match_sharing_one_word_of_many_stays_weak() {
        // A paraphrase: note 2 holds one of its four content words, note 1 none, but
        // note 1 is what it means.
        let semantic = [(id(1), 0.55), (id(2), 0.35), (id(3), 0.30)];
        let partial = [KeywordScore {
            note_id: id(2),
            score: 4.0,
            coverage: 0.25,
        }];
        let weighty = Fusion {
            keyword_weight: 0.6,
        };
        assert_eq!(fuse(&semantic, &partial, weighty, 10)[0].note_id, id(1));
        // The same match holding every word wins at that weight.
        let whole = [KeywordScore {
            coverage: 1.0,
            ..partial[0]
        }];
        assert_eq!(fuse(&semantic, &whole, weighty, 10)[0].note_id, id(2));
    }
}
