//! What the engine counts about itself and reports for `/metrics`:
//! [`Stats`] counters, the head's size, RocksDB's own figures and the disk
//! space taken. Never decides anything.

use std::sync::atomic::{AtomicU64, Ordering};

use pharos_storage::{AppendResult, RejectReason};

use super::{CFS, RocksStorage};

/// Counters the engine keeps about itself, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub appended_samples: AtomicU64,
    pub duplicate_samples: AtomicU64,
    /// Rejected samples, one counter per [`RejectReason`] (see [`Stats::rejected`]).
    pub(super) rejected: [AtomicU64; RejectReason::ALL.len()],
    pub retention_runs: AtomicU64,
    pub chunks_written: AtomicU64,
    pub flushes: AtomicU64,
}

impl RocksStorage {
    /// Adds what an append did to the counters.
    pub(super) fn count(&self, res: &AppendResult) {
        let st = &self.stats;
        st.appended_samples.fetch_add(res.accepted - res.duplicates, Ordering::Relaxed);
        st.duplicate_samples.fetch_add(res.duplicates, Ordering::Relaxed);
        for r in &res.rejected {
            st.rejected(r.reason).fetch_add(r.count, Ordering::Relaxed);
        }
    }

    /// Active series held in memory.
    pub fn num_series(&self) -> usize {
        self.head.lock().series.len()
    }

    /// Open head chunks that hold samples (a pass over the head).
    pub fn head_chunks(&self) -> usize {
        self.head.lock().series.values().filter(|s| !s.chunk.is_empty()).count()
    }

    /// RocksDB's own figures, as `(metric name, help, value)`: write stalls,
    /// compaction backlog, memtables and level-0 files (summed over the
    /// column families where RocksDB keeps them per family).
    pub fn engine_figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        let db_int = |p: &str| self.db.property_int_value(p).ok().flatten().unwrap_or(0) as f64;
        let cf_sum = |p: &str| -> f64 {
            CFS.iter()
                .filter_map(|n| self.db.cf_handle(n))
                .filter_map(|cf| self.db.property_int_value_cf(cf, p).ok().flatten())
                .sum::<u64>() as f64
        };
        vec![
            (
                "pharos_rocksdb_write_stopped",
                "1 while RocksDB stops writes (too many memtables or level-0 files).",
                db_int("rocksdb.is-write-stopped"),
            ),
            (
                "pharos_rocksdb_delayed_write_rate_bytes",
                "Write rate RocksDB currently throttles to; 0 when writes are not delayed.",
                db_int("rocksdb.actual-delayed-write-rate"),
            ),
            (
                "pharos_rocksdb_running_compactions",
                "Compactions running now.",
                db_int("rocksdb.num-running-compactions"),
            ),
            ("pharos_rocksdb_running_flushes", "Memtable flushes running now.", db_int("rocksdb.num-running-flushes")),
            (
                "pharos_rocksdb_pending_compaction_bytes",
                "Bytes RocksDB estimates compaction still has to rewrite.",
                cf_sum("rocksdb.estimate-pending-compaction-bytes"),
            ),
            ("pharos_rocksdb_level0_files", "Table files in level 0.", cf_sum("rocksdb.num-files-at-level0")),
            ("pharos_rocksdb_memtable_bytes", "Bytes of all memtables.", cf_sum("rocksdb.cur-size-all-mem-tables")),
            ("pharos_rocksdb_sst_bytes", "Bytes of all table files.", cf_sum("rocksdb.total-sst-files-size")),
        ]
    }

    /// Bytes of every file in the data directory (tables, logs, manifests).
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}
