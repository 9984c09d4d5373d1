//! The read path. [`RocksStorage::select_series`]: for each time partition
//! a query overlaps, matchers resolve to series ids through that
//! partition's postings (`postings.rs`); samples come from the partition's
//! chunks plus the open head chunk.
//!
//! The metadata calls ([`RocksStorage::matching_in_range`]) never read
//! samples they do not need: the head's matchers and each series' newest
//! sample decide almost every series in memory, and only a series whose
//! newest sample lies after the range is looked up on disk, by the time
//! bounds of its chunks in the partitions the range overlaps.

use std::collections::BTreeMap;

use pharos_model::{Labels, Matcher, Sample, Series};
use pharos_storage::MetaQuery;
use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::head::MemSeries;
use super::{CF_CHUNKS, RocksStorage, keys};
use crate::Error;
use crate::error::corrupt;

impl RocksStorage {
    /// [`pharos_storage::Storage::select`].
    pub(super) fn select_series(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, Error> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let mut found: BTreeMap<u64, Vec<Sample>> = BTreeMap::new();
        let (first, last) = (keys::partition_of(mint), keys::partition_of(maxt));
        let mut from = first;
        // Skip straight to the partitions that hold data of this tenant.
        while let Some(p) = self.next_partition(tenant, from, last)? {
            from = p.saturating_add(1);
            let ids = self.resolve(tenant, p, matchers)?;
            // The head chunks of these series, copied under the lock.
            let heads: Vec<(u64, Option<i64>, Vec<u8>)> = {
                let head = self.head.lock();
                ids.iter()
                    .filter_map(|id| head.series.get(id).map(|s| (*id, s.chunk.min_t(), s.chunk.bytes().to_vec())))
                    .collect()
            };
            for (id, head_min, head_bytes) in heads {
                let samples = found.entry(id).or_default();
                self.chunks_until(p, id, maxt, |min, max, bytes| {
                    if max < mint || Some(min) == head_min {
                        return Ok(false); // out of range, or an older flush of the open head chunk
                    }
                    let decoded = pharos_chunkenc::decode_stored(bytes).map_err(|e| corrupt(e.to_string()))?;
                    samples.extend(
                        decoded.into_iter().filter(|(t, _)| *t >= mint && *t <= maxt).map(|(t, v)| Sample::new(t, v)),
                    );
                    Ok(false)
                })?;
                if head_min.is_some_and(|m| keys::partition_of(m) == p) {
                    decode_into(&head_bytes, mint, maxt, samples)?;
                }
            }
            if p == i64::MAX {
                break;
            }
        }
        let head = self.head.lock();
        Ok(found
            .into_iter()
            .filter(|(_, samples)| !samples.is_empty())
            .filter_map(|(id, samples)| head.series.get(&id).map(|s| Series::new(s.labels(), samples)))
            .collect())
    }

    /// Label sets of the tenant's series that match `q` and have a sample
    /// in `[q.mint, q.maxt]`, unsorted.
    ///
    /// Exact, and cheap: a series whose newest sample is before the range
    /// is out, and one whose newest sample is in it is in, without a read.
    /// A series whose newest sample lies after the range is decided by its
    /// open head chunk when that starts at or before the range's end (its
    /// older chunks all end before the head chunk starts); otherwise by the
    /// chunks on disk in the partitions the range overlaps, from their time
    /// bounds (a chunk's first and last sample times): only a chunk that
    /// starts before the range and ends after it is decoded, to see whether
    /// a sample falls inside. The postings cannot decide alone: they name
    /// the series of a 2 h partition, which a range may cover in part.
    pub(super) fn matching_in_range(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        if q.mint > q.maxt {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut on_disk: Vec<(u64, Labels)> = Vec::new();
        {
            let head = self.head.lock();
            for (id, s) in head.series.iter().filter(|(_, s)| &*s.tenant == tenant) {
                if s.last.is_none_or(|l| l.t < q.mint) {
                    continue;
                }
                let labels = s.labels();
                if !q.matches(&labels) {
                    continue;
                }
                match in_head(s, q.mint, q.maxt)? {
                    Some(true) => found.push(labels),
                    Some(false) => {}
                    None => on_disk.push((*id, labels)),
                }
            }
        }
        let (mut from, last) = (keys::partition_of(q.mint), keys::partition_of(q.maxt));
        while !on_disk.is_empty() {
            let Some(p) = self.next_partition(tenant, from, last)? else { break };
            let mut undecided = Vec::with_capacity(on_disk.len());
            for (id, labels) in on_disk {
                match self.chunk_in_range(p, id, q.mint, q.maxt)? {
                    true => found.push(labels),
                    false => undecided.push((id, labels)),
                }
            }
            on_disk = undecided;
            if p == i64::MAX {
                break;
            }
            from = p + 1;
        }
        Ok(found)
    }

    /// Whether a chunk of series `id` in partition `p` on disk holds a
    /// sample in `[mint, maxt]`.
    fn chunk_in_range(&self, p: i64, id: u64, mint: i64, maxt: i64) -> Result<bool, Error> {
        let mut found = false;
        self.chunks_until(p, id, maxt, |min, max, bytes| {
            if max < mint {
                return Ok(false);
            }
            found = min >= mint || max <= maxt; // its first or its last sample is in range
            if !found {
                let decoded = pharos_chunkenc::decode_stored(bytes).map_err(|e| corrupt(e.to_string()))?;
                found = decoded.iter().any(|(t, _)| (mint..=maxt).contains(t));
            }
            Ok(true) // no later chunk starts before the range ends
        })?;
        Ok(found)
    }

    /// Calls `f` with (first time, last time, stored chunk) of each chunk of
    /// series `id` in partition `p` on disk, in time order, up to the last
    /// one starting at or before `maxt`, or until `f` returns true.
    fn chunks_until(
        &self,
        p: i64,
        id: u64,
        maxt: i64,
        mut f: impl FnMut(i64, i64, &[u8]) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let prefix = keys::chunk_prefix(p, id);
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(rocksdb::PrefixRange(&prefix[..]));
        let chunks = self.cf(CF_CHUNKS)?;
        for item in self.db.iterator_cf_opt(chunks, ro, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            let min = keys::chunk_key_min_t(&k).ok_or_else(|| corrupt("chunk key"))?;
            if min > maxt {
                break;
            }
            let (max, bytes) = keys::split_chunk_value(&v).ok_or_else(|| corrupt("chunk value"))?;
            if f(min, max, bytes)? {
                break;
            }
        }
        Ok(())
    }
}

/// Whether series `s` has a sample in `[mint, maxt]`, when its newest
/// sample and open head chunk tell; None when only its chunks on disk can.
fn in_head(s: &MemSeries, mint: i64, maxt: i64) -> Result<Option<bool>, Error> {
    let Some(last) = s.last else { return Ok(Some(false)) };
    if last.t < mint {
        return Ok(Some(false));
    }
    if last.t <= maxt {
        return Ok(Some(true));
    }
    match s.chunk.min_t() {
        Some(first) if first <= maxt => {
            if first >= mint {
                return Ok(Some(true));
            }
            let mut inside = Vec::new();
            decode_into(s.chunk.bytes(), mint, maxt, &mut inside)?;
            Ok(Some(!inside.is_empty()))
        }
        _ => Ok(None),
    }
}

fn decode_into(bytes: &[u8], mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), Error> {
    for item in pharos_chunkenc::iter(bytes) {
        let (t, v) = item.map_err(|e| corrupt(e.to_string()))?;
        if t >= mint && t <= maxt {
            out.push(Sample::new(t, v));
        }
    }
    Ok(())
}
