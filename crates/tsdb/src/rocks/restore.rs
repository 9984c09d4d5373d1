//! Copying the whole engine out and replacing it wholesale: what a raft
//! snapshot of a replicated shard is made of (see `pharos-raft`).
//!
//! [`RocksStorage::checkpoint`] is a RocksDB checkpoint (hard links to the
//! table files plus what the memtables held) of the engine's column families
//! (a caller's own, such as a raft log, are dropped from it). It
//! holds a prefix of the engine's write batches, and it includes the
//! engine's own write-ahead log, so it holds every sample appended before
//! it, flushed or not (with an external log, only what was flushed: the
//! caller flushes first). It needs no lock: an append's first batch (series,
//! postings, log record) makes the samples recoverable, and its second
//! (chunks cut full) only writes what replaying the log rebuilds anyway;
//! so queries and appends go on while the memtables are flushed for it.
//!
//! [`RocksStorage::restore_from_checkpoint`] replaces this engine's data
//! with a checkpoint's: under the head lock it empties every column family,
//! copies the checkpoint's keys and values in bounded write batches (never
//! the whole database in memory), and rebuilds the head from the result the
//! way [`RocksStorage::open`] does after a restart. Queries running
//! meanwhile see the old data, then an empty head, then the new data;
//! appends wait for the lock.

use std::path::Path;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use super::open::{cf, check_data_dir, foreign};
use super::{CFS, FORMAT, FORMAT_KEY, Head, RocksStorage};
use crate::Error;

/// Bytes of keys and values one restore write batch carries at most.
const RESTORE_BATCH_BYTES: usize = 4 << 20;

impl RocksStorage {
    /// Writes a consistent checkpoint of the whole database to `dir`, which
    /// must not exist yet (its parent must). On the same filesystem the
    /// table files are hard links, so this costs a memtable flush, not a
    /// copy, whatever the size.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), Error> {
        Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        // The caller's column families (a raft log) are not the engine's
        // data: drop them from the copy, which deletes their files there.
        let extra: Vec<String> = DB::list_cf(&Options::default(), dir)?
            .into_iter()
            .filter(|n| n != "default" && !CFS.contains(&n.as_str()))
            .collect();
        if !extra.is_empty() {
            let all = CFS.iter().map(|n| n.to_string()).chain(extra.iter().cloned());
            let mut copy = DB::open_cf(&Options::default(), dir, all)?;
            for name in &extra {
                copy.drop_cf(name)?;
            }
        }
        Ok(())
    }

    /// Replaces every sample, series and posting of this engine with those
    /// of the checkpoint in `dir` (written by [`RocksStorage::checkpoint`],
    /// possibly on another machine), then rebuilds the head. See the module
    /// overview. On error the engine may hold part of the checkpoint:
    /// restoring again from the same checkpoint completes it.
    pub fn restore_from_checkpoint(&self, dir: &Path) -> Result<(), Error> {
        if !dir.join("CURRENT").exists() {
            return Err(foreign(dir, "no RocksDB checkpoint there"));
        }
        check_data_dir(dir)?;
        let cfs = CFS.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let src = DB::open_cf_descriptors_read_only(&Options::default(), dir, cfs, false)?;
        let format = src.get_cf(cf(&src, super::CF_META)?, FORMAT_KEY)?;
        if format.as_deref() != Some(FORMAT) {
            let found = format.map(|f| String::from_utf8_lossy(&f).into_owned());
            let why = format!("checkpoint of format {found:?}, expected {:?}", String::from_utf8_lossy(FORMAT));
            return Err(foreign(dir, why));
        }
        let mut head = self.head.lock();
        let mut copied = 0u64;
        for name in CFS {
            self.clear_cf(name)?;
            copied += self.copy_cf(&src, name)?;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(WriteBatch::default(), &sync)?;
        *head = Head::default();
        self.load_head(&mut head)?;
        tracing::info!(from = %dir.display(), keys = copied, series = head.series.len(), "tsdb restored from a checkpoint");
        Ok(())
    }

    /// Deletes every key of column family `name`: whole table files first
    /// (cheap), then a range tombstone over whatever is left.
    fn clear_cf(&self, name: &str) -> Result<(), Error> {
        let cf = self.cf(name)?;
        let first = self.db.iterator_cf(cf, IteratorMode::Start).next().transpose()?.map(|(k, _)| k);
        let last = self.db.iterator_cf(cf, IteratorMode::End).next().transpose()?.map(|(k, _)| k);
        let (Some(first), Some(last)) = (first, last) else { return Ok(()) };
        self.db.delete_file_in_range_cf(cf, &first, &last)?;
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, &first, &last);
        b.delete_cf(cf, &last);
        self.db.write(b)?;
        Ok(())
    }

    /// Copies column family `name` of `src` into this database in batches
    /// of at most [`RESTORE_BATCH_BYTES`]; returns the keys copied.
    fn copy_cf(&self, src: &DB, name: &str) -> Result<u64, Error> {
        let (from, to) = (cf(src, name)?, self.cf(name)?);
        let mut b = WriteBatch::default();
        let mut n = 0u64;
        for item in src.iterator_cf(from, IteratorMode::Start) {
            let (k, v) = item?;
            b.put_cf(to, &k, &v);
            n += 1;
            if b.size_in_bytes() >= RESTORE_BATCH_BYTES {
                self.db.write(std::mem::take(&mut b))?;
            }
        }
        if !b.is_empty() {
            self.db.write(b)?;
        }
        Ok(n)
    }
}
