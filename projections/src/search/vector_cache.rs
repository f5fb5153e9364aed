//! The semantic ranking's vectors of one (owner, model), held in memory between
//! searches.
//!
//! Reading 10,000 vector rows through the database driver took 60–170 ms a search
//! (docs/benchmarks.md); the dot products themselves take about 2 ms. So the store keeps
//! each owner's unit vectors in one flat array and rereads them only when the owner's
//! token in `search_generations` changed: the fold replaces that token in the same
//! transaction as any change to what the semantic query reads, so a search never
//! answers from vectors older than the token it read. The token is read *before* the
//! vectors, so a change committed in between makes the copy look older than it is
//! (one extra reload), never newer.
//!
//! Memory is bounded: past [`VectorCache::budget_bytes`] the least recently used
//! owners' copies are dropped, and an owner whose vectors alone exceed the budget is
//! scored straight from the rows and never kept.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use uuid::Uuid;

/// The default memory budget of the cache: about 170,000 vectors of 384 dimensions.
pub const DEFAULT_BUDGET_BYTES: usize = 256 * 1024 * 1024;

/// One owner's published vectors of one model, as unit vectors.
#[derive(Debug, Default)]
pub struct OwnerVectors {
    /// The `search_generations` token they were read under (`None`: no row yet).
    generation: Option<String>,
    /// Per note: its id and where its vector lies in `values`.
    notes: Vec<(Uuid, usize, usize)>,
    /// Every vector, one after the other, each divided by its norm.
    values: Vec<f32>,
    /// The cache's clock at the last use, for eviction.
    last_used: AtomicU64,
}

impl OwnerVectors {
    /// An empty set read under `generation`.
    pub fn new(generation: Option<String>) -> Self {
        Self {
            generation,
            ..Self::default()
        }
    }

    /// Adds `note_id`'s vector (scaled to unit length; a zero vector stays zero and
    /// never matches).
    pub fn push(&mut self, note_id: Uuid, vector: &[f32]) {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        let start = self.values.len();
        if norm == 0.0 {
            self.values.extend(vector);
        } else {
            self.values.extend(vector.iter().map(|x| x / norm));
        }
        self.notes.push((note_id, start, vector.len()));
    }

    /// How many notes.
    pub fn len(&self) -> usize {
        self.notes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    /// Bytes held (what counts against the budget).
    pub fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f32>()
            + self.notes.len() * std::mem::size_of::<(Uuid, usize, usize)>()
    }

    /// Every note whose vector has `query`'s dimensions, by cosine similarity with
    /// `query`, best first (ties by note id), only positive ones.
    pub fn rank(&self, query: &[f32]) -> Vec<(Uuid, f32)> {
        let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return Vec::new();
        }
        let unit: Vec<f32> = query.iter().map(|x| x / norm).collect();
        let mut scored: Vec<(Uuid, f32)> = self
            .notes
            .iter()
            .filter(|(_, _, len)| *len == unit.len())
            .filter_map(|&(id, start, len)| {
                let vector = &self.values[start..start + len];
                let score: f32 = unit.iter().zip(vector).map(|(a, b)| a * b).sum();
                (score > 0.0).then_some((id, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }
}

/// Per (owner, model), the vectors last read, under a memory budget.
#[derive(Debug)]
pub struct VectorCache {
    entries: Mutex<HashMap<(String, String), Arc<OwnerVectors>>>,
    budget_bytes: usize,
    clock: AtomicU64,
}

impl Default for VectorCache {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES)
    }
}

impl VectorCache {
    /// An empty cache holding at most `budget_bytes` of vectors (0: holds nothing).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            budget_bytes,
            clock: AtomicU64::new(0),
        }
    }

    /// The memory budget.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<OwnerVectors>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The copy of (`owner`, `model`) if it was read under `generation`.
    pub fn get(
        &self,
        owner: &str,
        model: &str,
        generation: Option<&str>,
    ) -> Option<Arc<OwnerVectors>> {
        let entries = self.entries();
        let found = entries.get(&(owner.to_owned(), model.to_owned()))?;
        if found.generation.as_deref() != generation {
            return None;
        }
        found.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(Arc::clone(found))
    }

    /// Keeps `vectors` as the copy of (`owner`, `model`), dropping the least recently
    /// used copies past the budget; a set larger than the whole budget is not kept.
    pub fn put(&self, owner: &str, model: &str, vectors: Arc<OwnerVectors>) {
        let key = (owner.to_owned(), model.to_owned());
        let mut entries = self.entries();
        entries.remove(&key);
        if vectors.bytes() > self.budget_bytes {
            return;
        }
        vectors.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut held: usize = entries.values().map(|v| v.bytes()).sum::<usize>() + vectors.bytes();
        while held > self.budget_bytes {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(dropped) = entries.remove(&oldest) {
                held -= dropped.bytes();
            }
        }
        entries.insert(key, vectors);
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.entries().values().map(|v| v.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn set(generation: &str, vectors: &[(u128, &[f32])]) -> Arc<OwnerVectors> {
        let mut set = OwnerVectors::new(Some(generation.to_owned()));
        for (n, v) in vectors {
            set.push(id(*n), v);
        }
        Arc::new(set)
    }

    #[test]
    fn ranks_by_cosine_best_first_positive_only() {
        let s = set(
            "g",
            &[
                (1, &[1.0, 0.0]),
                (2, &[3.0, 3.0]),
                (3, &[-1.0, 0.0]),
                (4, &[0.0, 0.0]),
                (5, &[1.0, 0.0, 0.0]),
                (6, &[2.0, 0.0]),
            ],
        );
        let ranked = s.rank(&[2.0, 0.0]);
        let ids: Vec<Uuid> = ranked.iter().map(|r| r.0).collect();
        // 1 and 6 point the same way (tie by id), 2 at 45°; 3 opposite, 4 zero and 5 of
        // other dimensions never match.
        assert_eq!(ids, vec![id(1), id(6), id(2)]);
        assert!((ranked[0].1 - 1.0).abs() < 1e-6);
        assert!((ranked[2].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!(s.rank(&[0.0, 0.0]).is_empty());
    }

    #[test]
    fn a_copy_serves_only_its_own_generation() {
        let cache = VectorCache::new(1 << 20);
        cache.put("ann", "m", set("g1", &[(1, &[1.0])]));
        assert!(cache.get("ann", "m", Some("g1")).is_some());
        assert!(cache.get("ann", "m", Some("g2")).is_none());
        assert!(cache.get("ann", "m", None).is_none());
        assert!(cache.get("ann", "other", Some("g1")).is_none());
        assert!(cache.get("bob", "m", Some("g1")).is_none());
        let unseen = Arc::new(OwnerVectors::new(None));
        cache.put("bob", "m", unseen);
        assert!(cache.get("bob", "m", None).is_some());
    }

    #[test]
    fn the_least_recently_used_copy_leaves_first_and_oversized_ones_never_stay() {
        let one = set("g", &[(1, &[1.0; 64])]).bytes();
        let cache = VectorCache::new(2 * one);
        cache.put("a", "m", set("g", &[(1, &[1.0; 64])]));
        cache.put("b", "m", set("g", &[(2, &[1.0; 64])]));
        assert!(cache.get("a", "m", Some("g")).is_some()); // a is now the fresher
        cache.put("c", "m", set("g", &[(3, &[1.0; 64])]));
        assert!(cache.get("b", "m", Some("g")).is_none());
        assert!(cache.get("a", "m", Some("g")).is_some());
        assert!(cache.get("c", "m", Some("g")).is_some());
        assert!(cache.held_bytes() <= cache.budget_bytes());
        cache.put(
            "d",
            "m",
            set("g", &[(4, &[1.0; 64]), (5, &[1.0; 64]), (6, &[1.0; 64])]),
        );
        assert!(cache.get("d", "m", Some("g")).is_none());
        let nothing = VectorCache::new(0);
        nothing.put("a", "m", set("g", &[(1, &[1.0])]));
        assert!(nothing.get("a", "m", Some("g")).is_none());
    }
}
