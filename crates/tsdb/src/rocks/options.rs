//! The engine's tuning ([`RocksOptions`]) and the options of its RocksDB
//! column families.

use rocksdb::Options;

use super::durable::SyncHook;
use super::{CF_CHUNKS, CF_WAL};

/// Tuning of the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Sync the write-ahead log before an append returns (group commit:
    /// concurrent appends share one sync), so an acknowledged sample
    /// survives power loss, not only a killed process. On by default.
    /// With [`Self::external_log`] the caller syncs its own log through
    /// [`RocksStorage::group_sync`](super::RocksStorage::group_sync).
    pub sync_writes: bool,
    /// Fault injection for tests: runs before each sync of the log and may
    /// hold it or fail it.
    pub sync_fault: Option<SyncHook>,
    /// Samples per chunk before it is cut and written.
    pub chunk_samples: usize,
    /// Data older than this (relative to the wall clock) is rejected on
    /// append and dropped by [`RocksStorage::apply_retention`]. None keeps
    /// everything.
    pub retention_ms: Option<i64>,
    /// Active series a tenant may have; None for no limit.
    pub max_series_per_tenant: Option<usize>,
    /// Longest label name and value, in bytes.
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// The write-ahead log is the caller's: a replicated shard's raft log.
    /// Appends then write no log record of their own (every sample would be
    /// logged twice), [`RocksStorage::flush`] stores the caller's position
    /// in its log ([`RocksStorage::set_log_position`]) atomically with the
    /// flushed head, and after a restart the caller replays its log from
    /// [`RocksStorage::log_position`] on: samples appended after the last
    /// flush are not in the engine until then.
    pub external_log: bool,
    /// Column families opened in the same database for the caller's own
    /// keys (a replicated shard's raft log and state), reached through
    /// [`RocksStorage::db`]. They are left out of checkpoints and restores.
    pub extra_column_families: Vec<String>,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            sync_writes: true,
            sync_fault: None,
            chunk_samples: pharos_chunkenc::TARGET_SAMPLES,
            retention_ms: None,
            max_series_per_tenant: None,
            max_label_name_len: 1024,
            max_label_value_len: 4096,
            external_log: false,
            extra_column_families: Vec::new(),
        }
    }
}

/// Options of one column family. Data at rest is zstd-compressed in
/// blocks large enough for the repetition across neighbouring chunks and
/// postings to count; the log is short-lived and left uncompressed.
pub(super) fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut o = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    if name == CF_WAL {
        o.set_compression_type(rocksdb::DBCompressionType::None);
    } else {
        o.set_compression_type(rocksdb::DBCompressionType::Zstd);
        table.set_block_size(if name == CF_CHUNKS { 32 << 10 } else { 16 << 10 });
    }
    o.set_block_based_table_factory(&table);
    o
}
