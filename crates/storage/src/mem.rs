//! An in-memory engine: a sorted map of series to sample vectors. Small and
//! obviously correct; the reference the RocksDB engine is tested against.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use pharos_model::{Labels, Matcher, Sample, Series};

use crate::check::{admit, reject_all};
use crate::{AppendResult, Error, MetaQuery, SeriesSamples, Storage, validate_labels};

#[derive(Default)]
pub struct MemStorage {
    tenants: RwLock<HashMap<String, BTreeMap<Labels, Vec<Sample>>>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Label sets of the tenant's series that match the query and have a
    /// sample in its time range, sorted.
    fn matching(&self, tenant: &str, q: &MetaQuery) -> Vec<Labels> {
        let tenants = self.tenants.read();
        let Some(map) = tenants.get(tenant) else { return Vec::new() };
        map.iter()
            .filter(|(l, samples)| q.matches(l) && !in_range(samples, q.mint, q.maxt).is_empty())
            .map(|(l, _)| l.clone())
            .collect()
    }
}

/// The samples of a time-ordered series in `[mint, maxt]`.
fn in_range(samples: &[Sample], mint: i64, maxt: i64) -> &[Sample] {
    let start = samples.partition_point(|s| s.t < mint);
    let end = samples.partition_point(|s| s.t <= maxt);
    samples.get(start..end).unwrap_or_default()
}

impl Storage for MemStorage {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        let mut tenants = self.tenants.write();
        let map = tenants.entry(tenant.to_string()).or_default();
        let mut res = AppendResult::default();
        for s in batch {
            if !validate_labels(&s.labels) {
                res.rejected.push(reject_all(s, crate::RejectReason::InvalidLabels));
                continue;
            }
            let stored = map.entry(s.labels.clone()).or_default();
            let (fresh, dups, rejected) = admit(&s.labels, stored.last().copied(), &s.samples);
            res.accepted += fresh.len() as u64 + dups;
            res.duplicates += dups;
            res.rejected.extend(rejected);
            stored.extend(fresh);
            if stored.is_empty() {
                map.remove(&s.labels);
            }
        }
        Ok(res)
    }

    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let tenants = self.tenants.read();
        let Some(map) = tenants.get(tenant) else { return Ok(Vec::new()) };
        Ok(map
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.matches_labels(l)))
            .filter_map(|(l, samples)| {
                let samples = in_range(samples, mint, maxt);
                (!samples.is_empty()).then(|| Series::new(l.clone(), samples.to_vec()))
            })
            .collect())
    }

    fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        Ok(q.series_answer(self.matching(tenant, q)))
    }

    fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        Ok(q.names_answer(&self.matching(tenant, q)))
    }

    fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        Ok(q.values_answer(name, &self.matching(tenant, q)))
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}
