//! The RocksDB engine: one implementation of [`pharos_storage::Storage`].
//!
//! Write path (`append.rs`): assign series ids, classify every sample
//! (pure, with [`pharos_storage::classify`]), then write the new series,
//! their postings and one write-ahead log record in ONE atomic RocksDB
//! batch, and only then apply the samples to the in-memory head (`head.rs`:
//! one open Gorilla chunk per series). A chunk that reaches its target size
//! is written to the `chunks` column family and a new one is opened.
//! [`RocksStorage::flush`](pharos_storage::Storage::flush) writes every open
//! chunk and trims the log; after a crash, [`RocksStorage::open`]
//! (`open.rs`) checks the directory and reloads the head (`recovery.rs`).
//!
//! Read path (`query.rs`): for each time partition a query overlaps,
//! matchers resolve to series ids through that partition's postings
//! (`postings.rs`); samples come from the partition's chunks plus the open
//! head chunk. Metadata calls answer from the head and chunk time bounds.
//!
//! Time partitions (2 h, see `keys.rs`) key both postings and chunks, and a
//! chunk never spans two of them, so retention drops whole partitions with
//! range deletes (`retention.rs`). Checkpoints and restores are in
//! `restore.rs`, counters and RocksDB's figures in `stats.rs`.

mod append;
mod durable;
mod head;
mod keys;
mod metrics;
mod open;
mod options;
mod postings;
mod query;
mod recovery;
mod restore;
mod retention;
mod stats;
mod wal;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use pharos_model::{Labels, Matcher, Series};
use pharos_storage::{AppendResult, MetaQuery, SeriesSamples, Storage};
use rocksdb::DB;

pub use self::durable::{GroupSync, SyncFailed, SyncHook};
use head::Head;
pub use options::RocksOptions;
pub use stats::Stats;

const CF_META: &str = "meta";
const CF_SERIES: &str = "series";
const CF_POSTINGS: &str = "postings";
const CF_CHUNKS: &str = "chunks";
const CF_WAL: &str = "wal";
const CF_HEADS: &str = "heads";
const CFS: [&str; 6] = [CF_META, CF_SERIES, CF_POSTINGS, CF_CHUNKS, CF_WAL, CF_HEADS];
const FORMAT_KEY: &[u8] = b"format";
/// In `meta`: the caller's log position the flushed state covers
/// ([`RocksOptions::external_log`]).
const LOG_POSITION_KEY: &[u8] = b"log_position";
const FORMAT: &[u8] = b"pharos-tsdb/2";

/// The RocksDB storage engine. See the module overview.
pub struct RocksStorage {
    db: Arc<DB>,
    head: Mutex<Head>,
    /// With [`RocksOptions::external_log`]: the caller's log position that
    /// the head covers, stored by the next flush.
    log_position: Mutex<Option<Vec<u8>>>,
    opts: RocksOptions,
    path: PathBuf,
    pub stats: Stats,
    /// Syncs of the database's log, shared by every writer to it.
    durable: Arc<GroupSync>,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage").field("path", &self.path).finish()
    }
}

/// The contract's calls, each answered by the file that owns it; the
/// engine's errors become the contract's.
impl Storage for RocksStorage {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, pharos_storage::Error> {
        Ok(self.append_batch(tenant, batch)?)
    }

    fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, pharos_storage::Error> {
        Ok(self.select_series(tenant, matchers, mint, maxt)?)
    }

    fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, pharos_storage::Error> {
        Ok(q.series_answer(self.matching_in_range(tenant, q)?))
    }

    fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, pharos_storage::Error> {
        Ok(q.names_answer(&self.matching_in_range(tenant, q)?))
    }

    fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, pharos_storage::Error> {
        Ok(q.values_answer(name, &self.matching_in_range(tenant, q)?))
    }

    fn flush(&self) -> Result<(), pharos_storage::Error> {
        Ok(self.flush_head()?)
    }
}
