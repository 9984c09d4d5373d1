//! Crash recovery and the flush that bounds it. [`RocksStorage::flush_head`]
//! writes every open chunk and trims the write-ahead log; after a crash,
//! [`RocksStorage::recover`] reloads the series table, reopens each
//! series' last chunk and replays the log (replayed samples already on
//! disk are exact duplicates and drop out).

use std::sync::atomic::Ordering;

use pharos_model::{Labels, Sample};
use pharos_storage::admit;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::head::{Head, valid_label_encoding};
use super::{CF_CHUNKS, CF_HEADS, CF_META, CF_SERIES, CF_WAL, CFS, LOG_POSITION_KEY, RocksStorage, keys, wal};
use crate::Error;
use crate::error::corrupt;

impl RocksStorage {
    /// Loads the series table and every series' last chunk, then replays the log.
    pub(super) fn recover(&self) -> Result<(), Error> {
        self.load_head(&mut self.head.lock())
    }

    /// [`RocksStorage::recover`] into `head` (empty), whose lock the caller holds.
    pub(super) fn load_head(&self, head: &mut Head) -> Result<(), Error> {
        for item in self.db.iterator_cf(self.cf(CF_SERIES)?, IteratorMode::Start) {
            let (k, v) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| corrupt("series key"))?);
            let sep = v.iter().position(|b| *b == keys::SEP).ok_or_else(|| corrupt(format!("series {id}")))?;
            let tenant = std::str::from_utf8(&v[..sep]).map_err(|_| corrupt(format!("series {id} tenant")))?;
            let encoded = &v[sep + 1..];
            if !valid_label_encoding(encoded) {
                return Err(corrupt(format!("series {id} labels")));
            }
            // The value is `tenant 0xff labels`, exactly what the hash covers.
            head.insert(id, tenant, xxhash_rust::xxh3::xxh3_64(&v), encoded.into());
        }
        // The newest chunk of every series: one pass over the chunk keys
        // (values are read only for the winners).
        // The newest chunk of every series, named by `heads`: one read per
        // series, however long the history on disk.
        let chunks = self.cf(CF_CHUNKS)?;
        for item in self.db.iterator_cf(self.cf(CF_HEADS)?, IteratorMode::Start) {
            let (k, key) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| corrupt("heads key"))?);
            let v = self.db.get_cf(chunks, &key)?.ok_or_else(|| corrupt(format!("chunk of series {id} vanished")))?;
            let (_, bytes) = keys::split_chunk_value(&v).ok_or_else(|| corrupt(format!("chunk of series {id}")))?;
            let enc =
                pharos_chunkenc::reopen_stored(bytes).map_err(|e| corrupt(format!("chunk of series {id}: {e}")))?;
            if let Some(s) = head.series.get_mut(&id) {
                s.last = enc.last().map(|(t, v)| Sample::new(t, v));
                s.indexed = s.last.map(|l| keys::partition_of(l.t));
                if enc.len() < self.opts.chunk_samples {
                    s.chunk = enc;
                }
            }
        }
        let wal = self.cf(CF_WAL)?;
        let mut replayed = 0u64;
        let mut cut = WriteBatch::default();
        for item in self.db.iterator_cf(wal, IteratorMode::Start) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| corrupt("wal key"))?);
            let record = wal::decode(&v).ok_or_else(|| corrupt(format!("wal record {seq}")))?;
            for (id, samples) in record {
                let Some(s) = head.series.get(&id) else {
                    return Err(corrupt(format!("wal record {seq} names unknown series {id}")));
                };
                let (fresh, _, _) = admit(&Labels::default(), s.last, &samples);
                replayed += fresh.len() as u64;
                self.index_partitions(head, id, &fresh, &mut cut)?;
                self.apply(head, id, &fresh, &mut cut)?;
            }
            head.next_seq = seq + 1;
        }
        self.db.write(cut)?;
        tracing::info!(path = %self.path.display(), series = head.series.len(), replayed, "tsdb opened");
        Ok(())
    }

    /// Writes every open chunk that holds unwritten samples, trims the
    /// log they were in and stores the external log position (see
    /// [`pharos_storage::Storage::flush`]).
    pub(super) fn flush_head(&self) -> Result<(), Error> {
        let mut head = self.head.lock();
        let mut wb = WriteBatch::default();
        for (id, s) in head.series.iter_mut().filter(|(_, s)| s.dirty) {
            self.write_chunk(&mut wb, *id, &s.chunk)?;
            s.dirty = false;
        }
        let trimmed = head.next_seq;
        wb.delete_range_cf(self.cf(CF_WAL)?, 0u64.to_be_bytes(), trimmed.to_be_bytes());
        if let Some(position) = self.log_position.lock().as_ref() {
            wb.put_cf(self.cf(CF_META)?, LOG_POSITION_KEY, position);
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(wb, &w)?;
        drop(head);
        for name in CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        // The trimmed log may already sit in table files: drop them now
        // rather than whenever compaction gets to them. Records appended
        // since (sequence >= `trimmed`) are kept.
        if let Some(end) = trimmed.checked_sub(1) {
            let wal = self.cf(CF_WAL)?;
            self.db.delete_file_in_range_cf(wal, 0u64.to_be_bytes(), end.to_be_bytes())?;
            self.db.compact_range_cf(wal, Some(0u64.to_be_bytes()), Some(trimmed.to_be_bytes()));
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
