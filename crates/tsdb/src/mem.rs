//! An in-memory engine: a sorted map of series to sample vectors. Small and
//! obviously correct; the reference the RocksDB engine is tested against.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::RwLock;
use pharos_model::{Labels, Matcher, Series};

use crate::check::{admit, reject_all};
use crate::{AppendResult, Error, SeriesSamples, Storage, validate_labels};

#[derive(Default)]
pub struct MemStorage {
    tenants: RwLock<HashMap<String, BTreeMap<Labels, Vec<pharos_model::Sample>>>>,
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn matching(&self, tenant: &str, matchers: &[Matcher]) -> Vec<Labels> {
        let tenants = self.tenants.read();
        tenants
            .get(tenant)
            .map(|m| m.keys().filter(|l| matchers.iter().all(|m| m.matches_labels(l))).cloned().collect())
            .unwrap_or_default()
    }
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
                let start = samples.partition_point(|s| s.t < mint);
                let end = samples.partition_point(|s| s.t <= maxt);
                (start < end).then(|| Series::new(l.clone(), samples[start..end].to_vec()))
            })
            .collect())
    }

    fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error> {
        Ok(self.matching(tenant, matchers))
    }

    fn label_names(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let names: BTreeSet<String> = self
            .matching(tenant, matchers)
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn label_values(&self, tenant: &str, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let values: BTreeSet<String> =
            self.matching(tenant, matchers).iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
        Ok(values.into_iter().collect())
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}
