//! The engine's own metrics on `/metrics`, written from its [`Stats`] and
//! RocksDB's properties. The rejected-samples family has one series per
//! [`RejectReason`], so a new reason shows up without touching this file.

use std::sync::atomic::{AtomicU64, Ordering};

use pharos_exposition::Exposition;

use super::{RocksStorage, Stats};
use pharos_storage::RejectReason;

impl Stats {
    /// The counter of samples rejected for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> &AtomicU64 {
        // `ALL` lists the reasons in declaration order (tested below).
        &self.rejected[reason as usize]
    }
}

impl RocksStorage {
    /// Writes the engine's metrics, `pharos_tsdb_*` and `pharos_rocksdb_*`.
    pub fn write_metrics(&self, e: &mut Exposition) {
        let st = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        e.counter("pharos_tsdb_appended_samples_total", "Samples appended to the TSDB.", get(&st.appended_samples));
        e.counter(
            "pharos_tsdb_duplicate_samples_total",
            "Exact duplicate samples dropped.",
            get(&st.duplicate_samples),
        );
        let labels: Vec<[(&str, &str); 1]> = RejectReason::ALL.iter().map(|r| [("reason", r.as_str())]).collect();
        let rejected: Vec<(&[(&str, &str)], f64)> =
            RejectReason::ALL.iter().zip(&labels).map(|(r, l)| (&l[..], get(st.rejected(*r)))).collect();
        e.family(
            "pharos_tsdb_rejected_samples_total",
            "counter",
            "Samples rejected by the TSDB, by reason.",
            &rejected,
        );
        e.counter("pharos_tsdb_retention_runs_total", "Runs of the retention sweep.", get(&st.retention_runs));
        e.counter("pharos_tsdb_chunks_written_total", "Full chunks written to RocksDB.", get(&st.chunks_written));
        e.counter("pharos_tsdb_flushes_total", "Flushes of the head to disk.", get(&st.flushes));
        e.gauge("pharos_tsdb_active_series", "Series held in the head.", self.num_series() as f64);
        e.gauge("pharos_tsdb_disk_bytes", "Bytes of every file in the data directory.", self.disk_bytes() as f64);
        e.gauge("pharos_tsdb_head_chunks", "Open head chunks holding samples.", self.head_chunks() as f64);
        e.counter(
            "pharos_tsdb_wal_syncs_total",
            "Syncs of the write-ahead log (the raft log on a replica), each shared by the writes waiting then.",
            self.group_sync().syncs() as f64,
        );
        for (name, help, value) in self.engine_figures() {
            e.gauge(name, help, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        for (i, r) in RejectReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "RejectReason::ALL lists {r:?} out of declaration order");
        }
        let st = Stats::default();
        st.rejected(RejectReason::TooOld).fetch_add(2, Ordering::Relaxed);
        for r in RejectReason::ALL {
            let want = if r == RejectReason::TooOld { 2 } else { 0 };
            assert_eq!(st.rejected(r).load(Ordering::Relaxed), want, "{r:?}");
        }
    }
}
