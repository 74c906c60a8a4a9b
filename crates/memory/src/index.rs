//! In-memory vector index per memory: exact scoring of normalised vectors.
//!
//! Exact search over 100k x 384 floats is ~40M multiply-adds, a few tens of milliseconds on one
//! core, and needs no approximate-index tuning; the store keeps the vectors, so the index is a
//! cache that is loaded on first use and kept in step by every write path.

use crate::embed::dot;
use berth_store::memory::EmbeddingRow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Indexes at least this large are scanned by several threads.
const PARALLEL_FROM: usize = 20_000;
/// Most scan threads per search.
const MAX_PARTS: usize = 4;

/// Best first.
fn by_score(a: &(usize, f32), b: &(usize, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1)
}

/// Keeps the `k` best of `scored`, best first.
fn keep_best(scored: &mut Vec<(usize, f32)>, k: usize) {
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, by_score);
        scored.truncate(k);
    }
    scored.sort_by(by_score);
}

/// What a search is restricted to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub namespace_prefix: Option<String>,
    pub strategy_id: Option<String>,
}

impl Filter {
    fn admits(&self, e: &Entry) -> bool {
        self.namespace.as_ref().is_none_or(|n| &e.namespace == n)
            && self
                .namespace_prefix
                .as_ref()
                .is_none_or(|p| e.namespace.starts_with(p.as_str()))
            && self
                .strategy_id
                .as_ref()
                .is_none_or(|s| &e.strategy_id == s)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    record_id: String,
    namespace: String,
    strategy_id: String,
}

/// The vectors of one memory, stored contiguously for a cache-friendly scan.
#[derive(Debug, Default)]
pub(crate) struct Index {
    dims: usize,
    entries: Vec<Entry>,
    vecs: Vec<f32>,
    pos: HashMap<String, usize>,
}

impl Index {
    pub(crate) fn upsert(&mut self, row: EmbeddingRow) {
        if self.dims == 0 {
            self.dims = row.embedding.len();
        }
        if row.embedding.len() != self.dims {
            // A vector of another model (the embedder changed): unusable until re-embedded.
            self.remove(&row.record_id);
            return;
        }
        let entry = Entry {
            record_id: row.record_id.clone(),
            namespace: row.namespace,
            strategy_id: row.strategy_id,
        };
        match self.pos.get(&row.record_id) {
            Some(&i) => {
                self.entries[i] = entry;
                self.vecs[i * self.dims..(i + 1) * self.dims].copy_from_slice(&row.embedding);
            }
            None => {
                self.pos.insert(row.record_id, self.entries.len());
                self.entries.push(entry);
                self.vecs.extend_from_slice(&row.embedding);
            }
        }
    }

    pub(crate) fn remove(&mut self, record_id: &str) {
        let Some(i) = self.pos.remove(record_id) else {
            return;
        };
        let last = self.entries.len() - 1;
        if i != last {
            self.entries.swap(i, last);
            let d = self.dims;
            let (head, tail) = self.vecs.split_at_mut(last * d);
            head[i * d..(i + 1) * d].copy_from_slice(&tail[..d]);
            self.pos.insert(self.entries[i].record_id.clone(), i);
        }
        self.entries.pop();
        self.vecs.truncate(last * self.dims);
    }

    /// The `k` most similar admitted records, best first, with their cosine similarity.
    pub(crate) fn search(&self, query: &[f32], filter: &Filter, k: usize) -> Vec<(String, f32)> {
        if self.dims == 0 || query.len() != self.dims || k == 0 {
            return Vec::new();
        }
        // The scan reads every vector (150 MB at 100k x 384): memory-bound, so large indexes are
        // split across the cores, each part keeping its own top k.
        let parts = if self.entries.len() >= PARALLEL_FROM {
            std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_PARTS)
        } else {
            1
        };
        let per = self.entries.len().div_ceil(parts.max(1));
        let mut scored: Vec<(usize, f32)> = if parts > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..parts)
                    .map(|p| {
                        let range = p * per..((p + 1) * per).min(self.entries.len());
                        s.spawn(move || self.top_k(query, filter, k, range))
                    })
                    .collect();
                handles
                    .into_iter()
                    // A scan thread only does arithmetic on slices it was given; a panic there
                    // is a bug, re-raised as is.
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        } else {
            self.top_k(query, filter, k, 0..self.entries.len())
        };
        keep_best(&mut scored, k);
        scored
            .into_iter()
            .map(|(i, s)| (self.entries[i].record_id.clone(), s))
            .collect()
    }

    /// Cosine similarity of one record to `query`; `None` when it has no vector here.
    pub(crate) fn similarity(&self, query: &[f32], record_id: &str) -> Option<f32> {
        let &i = self.pos.get(record_id)?;
        (query.len() == self.dims)
            .then(|| dot(query, &self.vecs[i * self.dims..(i + 1) * self.dims]))
    }

    /// The best `k` admitted entries of `range`, unordered.
    fn top_k(
        &self,
        query: &[f32],
        filter: &Filter,
        k: usize,
        range: std::ops::Range<usize>,
    ) -> Vec<(usize, f32)> {
        let d = self.dims;
        let mut scored: Vec<(usize, f32)> = range
            .filter(|&i| filter.admits(&self.entries[i]))
            .map(|i| (i, dot(query, &self.vecs[i * d..(i + 1) * d])))
            .collect();
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, by_score);
            scored.truncate(k);
        }
        scored
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Indexes of all memories, each loaded on first use.
///
/// With several nodes writing one store, a node's loaded index misses the records other nodes
/// write: `max_age` bounds how long a loaded index is trusted before the next search loads it
/// again (`None`: one node, every write goes through this index).
#[derive(Default)]
pub(crate) struct Indexes {
    map: RwLock<HashMap<String, Loaded>>,
    max_age: Option<Duration>,
}

struct Loaded {
    index: Arc<RwLock<Index>>,
    at: Instant,
}

impl Indexes {
    /// Indexes trusted for `max_age` after loading (see the type's docs).
    pub(crate) fn with_max_age(max_age: Option<Duration>) -> Self {
        Self {
            map: RwLock::default(),
            max_age,
        }
    }

    fn fresh(&self, l: &Loaded) -> bool {
        self.max_age.is_none_or(|age| l.at.elapsed() < age)
    }

    /// The loaded index of a memory, if it was loaded (and is not too old to trust).
    pub(crate) fn get(&self, memory_id: &str) -> Option<Arc<RwLock<Index>>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(memory_id)
            .filter(|l| self.fresh(l))
            .map(|l| l.index.clone())
    }

    /// Installs a freshly loaded index unless another caller installed a fresh one first.
    pub(crate) fn install(&self, memory_id: &str, rows: Vec<EmbeddingRow>) -> Arc<RwLock<Index>> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = map.get(memory_id)
            && self.fresh(l)
        {
            return l.index.clone();
        }
        let mut idx = Index::default();
        for r in rows {
            idx.upsert(r);
        }
        let index = Arc::new(RwLock::new(idx));
        map.insert(
            memory_id.to_owned(),
            Loaded {
                index: index.clone(),
                at: Instant::now(),
            },
        );
        index
    }

    /// Applies a write to a loaded index; an index not loaded yet will read it from the store.
    pub(crate) fn upsert(&self, memory_id: &str, row: EmbeddingRow) {
        if let Some(i) = self.get(memory_id) {
            i.write()
                .unwrap_or_else(PoisonError::into_inner)
                .upsert(row);
        }
    }

    /// Removes a record from a loaded index.
    pub(crate) fn remove(&self, memory_id: &str, record_id: &str) {
        if let Some(i) = self.get(memory_id) {
            i.write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(record_id);
        }
    }

    /// Forgets a deleted memory.
    pub(crate) fn drop_memory(&self, memory_id: &str) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(memory_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ns: &str, v: [f32; 2]) -> EmbeddingRow {
        EmbeddingRow {
            record_id: id.into(),
            namespace: ns.into(),
            strategy_id: "s".into(),
            embedding: v.to_vec(),
        }
    }

    #[test]
    fn an_index_older_than_its_max_age_is_loaded_again() {
        let rows = || vec![row("a", "/x/", [1.0, 0.0])];
        let one_node = Indexes::with_max_age(None);
        let first = one_node.install("m", rows());
        // Another caller's load does not replace a trusted index.
        let again = one_node.install("m", vec![]);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(one_node.get("m").is_some());
        // Several nodes: past its age the index is not served, and the next load replaces it
        // with what the store holds now (another node added "b").
        let shared = Indexes::with_max_age(Some(Duration::ZERO));
        shared.install("m", rows());
        assert!(shared.get("m").is_none());
        let reloaded = shared.install(
            "m",
            vec![row("a", "/x/", [1.0, 0.0]), row("b", "/x/", [0.0, 1.0])],
        );
        assert_eq!(reloaded.read().unwrap().len(), 2);
    }

    #[test]
    fn search_ranks_filters_and_survives_removal() {
        let mut idx = Index::default();
        idx.upsert(row("a", "/x/", [1.0, 0.0]));
        idx.upsert(row("b", "/x/", [0.6, 0.8]));
        idx.upsert(row("c", "/y/", [0.0, 1.0]));
        let all = Filter::default();
        let hits = idx.search(&[1.0, 0.0], &all, 2);
        assert_eq!(
            hits.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let only_y = Filter {
            namespace_prefix: Some("/y".into()),
            ..Default::default()
        };
        assert_eq!(idx.search(&[1.0, 0.0], &only_y, 5)[0].0, "c");
        idx.remove("a");
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.search(&[1.0, 0.0], &all, 1)[0].0, "b");
        // The moved entry kept its vector.
        idx.upsert(row("c", "/y/", [0.0, 1.0]));
        assert_eq!(idx.search(&[0.0, 1.0], &all, 1)[0].0, "c");
    }

    #[test]
    fn a_large_index_scanned_in_parts_ranks_like_a_plain_scan() {
        let mut idx = Index::default();
        let n = PARALLEL_FROM + 5_000;
        // A fixed pseudo-random walk: no two vectors alike, the same every run.
        let mut x = 0x2545_f491_u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        };
        let mut rows = Vec::new();
        for i in 0..n {
            let v: Vec<f32> = (0..8).map(|_| next()).collect();
            rows.push((format!("r{i}"), v.clone()));
            idx.upsert(EmbeddingRow {
                record_id: format!("r{i}"),
                namespace: if i % 2 == 0 {
                    "/even/".into()
                } else {
                    "/odd/".into()
                },
                strategy_id: "s".into(),
                embedding: v,
            });
        }
        let q: Vec<f32> = (0..8).map(|_| next()).collect();
        let filter = Filter {
            namespace: Some("/odd/".into()),
            ..Default::default()
        };
        let mut expected: Vec<(String, f32)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, (id, v))| (id.clone(), dot(&q, v)))
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        expected.truncate(25);
        let got = idx.search(&q, &filter, 25);
        assert_eq!(
            got.iter().map(|h| &h.0).collect::<Vec<_>>(),
            expected.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
    }
}
