//! The head: every series held in memory (its labels, newest sample and
//! open Gorilla chunk), the index from label hashes to series ids, and the
//! chunk work done on it: appending admitted samples, cutting full chunks
//! (never across a partition) and writing the postings of the partitions a
//! series reaches. Reads and writes of RocksDB happen in the callers'
//! batches; this file never reads from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pharos_chunkenc::ChunkEncoder;
use pharos_model::{Labels, Sample};
use rocksdb::WriteBatch;

use super::{CF_CHUNKS, CF_HEADS, CF_POSTINGS, RocksStorage, keys};
use crate::Error;
use crate::error::corrupt;

pub(super) struct MemSeries {
    pub(super) tenant: Arc<str>,
    /// The canonical label encoding ([`Labels::encode`]): a fraction of the
    /// memory a decoded [`Labels`] takes, which matters at millions of series.
    pub(super) labels: Box<[u8]>,
    /// The open chunk; its samples are on disk only if `dirty` is false.
    pub(super) chunk: ChunkEncoder,
    pub(super) dirty: bool,
    pub(super) last: Option<Sample>,
    /// Newest partition whose postings name this series.
    pub(super) indexed: Option<i64>,
}

impl MemSeries {
    pub(super) fn labels(&self) -> Labels {
        // Only ever built from a valid encoding (checked when loaded).
        Labels::decode(&self.labels).unwrap_or_default()
    }
}

/// Hashes a `u64` key with one multiplication. The head's maps are keyed by
/// series ids (sequential) and label hashes (already xxh3): SipHash, std's
/// default, showed up at several percent of ingest CPU for nothing.
#[derive(Default, Clone, Copy)]
pub(super) struct U64Hasher(u64);

impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(super) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<U64Hasher>>;

/// Series ids whose label hashes collide: almost always exactly one.
pub(super) enum Ids {
    One(u64),
    /// A boxed slice (not a `Vec`) keeps every slot of the hash table small.
    Many(Box<[u64]>),
}

/// Whether `bytes` is a label encoding [`Labels::decode`] accepts, checked
/// without building the labels (restart reads millions of them).
pub(super) fn valid_label_encoding(bytes: &[u8]) -> bool {
    let Some(body) = bytes.strip_suffix(&[keys::SEP]) else { return bytes.is_empty() };
    let mut parts = 0;
    for (i, part) in body.split(|b| *b == keys::SEP).enumerate() {
        if (i % 2 == 0 && part.is_empty()) || std::str::from_utf8(part).is_err() {
            return false;
        }
        parts += 1;
    }
    parts % 2 == 0
}

/// `tenant 0xff labels` into `buf`, and its hash ([`pharos_model::series_hash`]).
pub(super) fn series_key(tenant: &str, labels: &Labels, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(keys::SEP);
    labels.encode_into(buf);
    xxhash_rust::xxh3::xxh3_64(buf)
}

#[derive(Default)]
pub(super) struct Head {
    pub(super) next_id: u64,
    pub(super) next_seq: u64,
    pub(super) by_hash: IdMap<Ids>,
    /// Boxed: a hash table keeps up to twice its length in empty slots,
    /// and a slot the size of a `MemSeries` (about 160 bytes) made those
    /// cost more than the series themselves at a million series.
    pub(super) series: IdMap<Box<MemSeries>>,
    pub(super) tenants: HashMap<String, Arc<str>>,
    pub(super) series_per_tenant: HashMap<Arc<str>, usize>,
}

impl Head {
    /// The id of the series whose `tenant 0xff labels` encoding is `key`.
    pub(super) fn lookup(&self, hash: u64, key: &[u8]) -> Option<u64> {
        let matches = |id: &u64| {
            self.series.get(id).is_some_and(|s| {
                key.len() == s.tenant.len() + 1 + s.labels.len()
                    && key.starts_with(s.tenant.as_bytes())
                    && key.ends_with(&s.labels)
            })
        };
        match self.by_hash.get(&hash)? {
            Ids::One(id) => Some(*id).filter(matches),
            Ids::Many(ids) => ids.iter().copied().find(matches),
        }
    }

    pub(super) fn insert(&mut self, id: u64, tenant: &str, hash: u64, labels: Box<[u8]>) {
        let tenant = match self.tenants.get(tenant) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(tenant);
                self.tenants.insert(tenant.to_string(), t.clone());
                t
            }
        };
        match self.by_hash.get_mut(&hash) {
            None => {
                self.by_hash.insert(hash, Ids::One(id));
            }
            Some(Ids::One(other)) => {
                let other = *other;
                self.by_hash.insert(hash, Ids::Many(Box::new([other, id])));
            }
            Some(Ids::Many(ids)) => *ids = ids.iter().copied().chain([id]).collect(),
        }
        *self.series_per_tenant.entry(tenant.clone()).or_default() += 1;
        self.series.insert(
            id,
            Box::new(MemSeries { tenant, labels, chunk: ChunkEncoder::new(), dirty: false, last: None, indexed: None }),
        );
        self.next_id = self.next_id.max(id + 1);
    }

    pub(super) fn remove(&mut self, id: u64) {
        let Some(s) = self.series.remove(&id) else { return };
        let hash = series_key(&s.tenant, &s.labels(), &mut Vec::new());
        let empty = match self.by_hash.get_mut(&hash) {
            Some(Ids::One(x)) => *x == id,
            Some(Ids::Many(ids)) => {
                *ids = ids.iter().copied().filter(|x| *x != id).collect();
                ids.is_empty()
            }
            None => false,
        };
        if empty {
            self.by_hash.remove(&hash);
        }
        if let Some(n) = self.series_per_tenant.get_mut(&s.tenant) {
            *n = n.saturating_sub(1);
        }
    }

    pub(super) fn tenant_series(&self, tenant: &str) -> usize {
        self.series_per_tenant.get(tenant).copied().unwrap_or(0)
    }
}

impl RocksStorage {
    /// Puts a chunk into `batch` in its on-disk form
    /// ([`pharos_chunkenc::encode_stored`]), and names it the series'
    /// newest chunk in `heads`.
    pub(super) fn write_chunk(&self, batch: &mut WriteBatch, id: u64, chunk: &ChunkEncoder) -> Result<(), Error> {
        if let (Some(min), Some(max)) = (chunk.min_t(), chunk.max_t()) {
            let stored = pharos_chunkenc::encode_stored(chunk.bytes())
                .map_err(|e| corrupt(format!("head chunk of series {id}: {e}")))?;
            let key = keys::chunk_key(id, min);
            batch.put_cf(self.cf(CF_CHUNKS)?, key, keys::chunk_value(max, &stored));
            batch.put_cf(self.cf(CF_HEADS)?, keys::series_key(id), key);
        }
        Ok(())
    }

    /// Appends already-admitted samples to a series' head chunk, cutting
    /// full chunks into `batch`.
    pub(super) fn apply(
        &self,
        head: &mut Head,
        id: u64,
        samples: &[Sample],
        batch: &mut WriteBatch,
    ) -> Result<(), Error> {
        let Some(s) = head.series.get_mut(&id) else { return Ok(()) };
        for x in samples {
            // A chunk never spans two partitions, so retention can drop whole ones.
            if s.chunk.min_t().is_some_and(|m| keys::partition_of(m) != keys::partition_of(x.t)) {
                self.cut(s, id, batch)?;
            }
            s.chunk.append(x.t, x.v).map_err(|e| corrupt(format!("head chunk of series {id}: {e}")))?;
            s.dirty = true;
            s.last = Some(*x);
            if s.chunk.len() >= self.opts.chunk_samples {
                self.cut(s, id, batch)?;
            }
        }
        Ok(())
    }

    /// Closes the open chunk of series `s` (`id`): written into `batch`
    /// unless already on disk, and a new empty one opened.
    fn cut(&self, s: &mut MemSeries, id: u64, batch: &mut WriteBatch) -> Result<(), Error> {
        if s.dirty {
            self.write_chunk(batch, id, &s.chunk)?;
            self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
        }
        s.chunk = ChunkEncoder::new();
        s.dirty = false;
        Ok(())
    }

    /// Writes the postings of series `id` for every partition `samples`
    /// reach beyond the newest one already indexed. Samples are in time
    /// order, so partitions only grow.
    pub(super) fn index_partitions(
        &self,
        head: &mut Head,
        id: u64,
        samples: &[Sample],
        batch: &mut WriteBatch,
    ) -> Result<(), Error> {
        let postings = self.cf(CF_POSTINGS)?;
        let Some(s) = head.series.get_mut(&id) else { return Ok(()) };
        let mut key = Vec::with_capacity(128);
        for x in samples {
            let p = keys::partition_of(x.t);
            if s.indexed.is_some_and(|i| i >= p) {
                continue;
            }
            keys::posting_key_into(&mut key, &s.tenant, p, b"", b"", id);
            batch.put_cf(postings, &key, []);
            for (name, value) in keys::encoded_pairs(&s.labels) {
                keys::posting_key_into(&mut key, &s.tenant, p, name, value, id);
                batch.put_cf(postings, &key, []);
            }
            s.indexed = Some(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two label sets whose hashes collide (forced here; xxh3 collisions are
    /// too rare to find) are told apart by their encodings.
    #[test]
    fn head_keeps_series_whose_hashes_collide_apart() {
        let mut head = Head::default();
        let (a, b) = (Labels::from_pairs(&[("__name__", "a")]), Labels::from_pairs(&[("__name__", "b")]));
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        series_key("t", &a, &mut ka);
        series_key("t", &b, &mut kb);
        let hash = 42;
        head.insert(1, "t", hash, ka[2..].into());
        head.insert(2, "t", hash, kb[2..].into());
        assert_eq!((head.lookup(hash, &ka), head.lookup(hash, &kb)), (Some(1), Some(2)));
        let mut kc = Vec::new();
        series_key("t", &Labels::from_pairs(&[("__name__", "c")]), &mut kc);
        assert_eq!(head.lookup(hash, &kc), None);
        head.insert(4, "t", hash, kc[2..].into());
        assert_eq!((head.lookup(hash, &ka), head.lookup(hash, &kc)), (Some(1), Some(4)));
        // removal finds the entry by the real hash of the labels
        let real = series_key("t", &a, &mut Vec::new());
        head.insert(3, "t", real, ka[2..].into());
        head.remove(3);
        assert!(!head.by_hash.contains_key(&real));
        assert_eq!(head.tenant_series("t"), 3);
    }
}
