//! Retention: data older than [`super::RocksOptions::retention_ms`] is
//! dropped a whole time partition at a time, with range deletes of its
//! chunks and postings, and series left without samples are forgotten.

use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use super::{CF_CHUNKS, CF_HEADS, CF_POSTINGS, CF_SERIES, RocksStorage, keys};
use crate::Error;

impl RocksStorage {
    /// Drops every partition wholly older than the retention period, and
    /// the series that have no samples left. Returns the series removed.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, Error> {
        let Some(retention) = self.opts.retention_ms else { return Ok(0) };
        let keep_from = keys::partition_of(now_ms.saturating_sub(retention));
        let min_t = keep_from.saturating_mul(keys::PARTITION_MS);
        let mut head = self.head.lock();
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(self.cf(CF_CHUNKS)?, keys::flip(i64::MIN), keys::flip(keep_from));
        let postings = self.cf(CF_POSTINGS)?;
        for tenant in head.tenants.keys() {
            wb.delete_range_cf(
                postings,
                keys::tenant_partition_prefix(tenant, i64::MIN),
                keys::tenant_partition_prefix(tenant, keep_from),
            );
        }
        let gone: Vec<u64> =
            head.series.iter().filter(|(_, s)| s.last.is_none_or(|l| l.t < min_t)).map(|(id, _)| *id).collect();
        let (series_cf, heads_cf) = (self.cf(CF_SERIES)?, self.cf(CF_HEADS)?);
        for id in &gone {
            wb.delete_cf(series_cf, keys::series_key(*id));
            wb.delete_cf(heads_cf, keys::series_key(*id));
        }
        self.db.write(wb)?;
        for id in &gone {
            head.remove(*id);
        }
        drop(head);
        self.stats.retention_runs.fetch_add(1, Ordering::Relaxed);
        if !gone.is_empty() {
            tracing::info!(series = gone.len(), keep_from_ms = min_t, "retention dropped old data");
        }
        Ok(gone.len())
    }
}

pub(super) use pharos_model::now_ms;
