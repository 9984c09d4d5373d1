//! The index lookup: matchers to the sorted ids of the series a time
//! partition's postings name, and the partitions that hold a tenant's data.
//! Reads only the `postings` column family.

use pharos_model::{MatchOp, Matcher};
use rocksdb::{Direction, IteratorMode, ReadOptions};

use super::{CF_POSTINGS, RocksStorage, keys};
use crate::Error;
use crate::error::corrupt;

/// Up to this many candidate series, a further equality matcher is checked
/// by point lookups rather than by reading its whole postings list.
const POINT_LOOKUP_MAX: usize = 256;

impl RocksStorage {
    /// Sorted ids of the tenant's series that match every matcher, resolved
    /// from the postings index.
    pub(super) fn resolve(&self, tenant: &str, partition: i64, matchers: &[Matcher]) -> Result<Vec<u64>, Error> {
        let mut result: Option<Vec<u64>> = None;
        // Equality first, the metric name first of all: usually the shortest
        // lists, so the broad ones (`job="x"`, every series) can be checked
        // by point lookups of the few candidates instead of being scanned.
        let mut narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
        narrowing.sort_by_key(|m| (m.op != MatchOp::Equal, m.name != "__name__"));
        for m in narrowing {
            let ids = match &result {
                Some(r) if m.op == MatchOp::Equal && r.len() <= POINT_LOOKUP_MAX => {
                    self.having_posting(tenant, partition, m, r)?
                }
                _ if m.op == MatchOp::Equal => self.postings(tenant, partition, &m.name, Some(&m.value), |_| true)?,
                _ => self.postings(tenant, partition, &m.name, None, |v| m.matches(v))?,
            };
            result = Some(match result {
                None => ids,
                Some(r) => intersect(&r, &ids),
            });
        }
        let mut result = match result {
            Some(r) => r,
            None => self.postings(tenant, partition, "", Some(""), |_| true)?,
        };
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let bad = self.postings(tenant, partition, &m.name, None, |v| !m.matches(v))?;
            result = subtract(&result, &bad);
        }
        Ok(result)
    }

    /// The ids among `candidates` (sorted) that have the posting of the
    /// equality matcher `m`, by one point lookup each.
    fn having_posting(&self, tenant: &str, partition: i64, m: &Matcher, candidates: &[u64]) -> Result<Vec<u64>, Error> {
        let cf = self.cf(CF_POSTINGS)?;
        let keys: Vec<Vec<u8>> = candidates
            .iter()
            .map(|id| {
                let mut k = Vec::new();
                keys::posting_key_into(&mut k, tenant, partition, m.name.as_bytes(), m.value.as_bytes(), *id);
                k
            })
            .collect();
        let found = self.db.batched_multi_get_cf(cf, &keys, true);
        let mut out = Vec::new();
        for (id, got) in candidates.iter().zip(found) {
            if got?.is_some() {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Sorted series ids of the postings of `name` (with exactly `value`, or
    /// any value passing `keep`).
    fn postings(
        &self,
        tenant: &str,
        partition: i64,
        name: &str,
        value: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<u64>, Error> {
        let name_prefix = keys::postings_prefix(tenant, partition, name, None);
        let prefix = keys::postings_prefix(tenant, partition, name, value);
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(rocksdb::PrefixRange(prefix.as_slice()));
        let mut ids = Vec::new();
        let mut last: Option<(Vec<u8>, bool)> = None;
        for item in self.db.iterator_cf_opt(self.cf(CF_POSTINGS)?, ro, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, _) = item?;
            let rest = &k[name_prefix.len()..];
            let (v, id) = keys::split_posting(rest).ok_or_else(|| corrupt("posting key"))?;
            let ok = match &last {
                Some((lv, ok)) if lv.as_slice() == v => *ok,
                _ => {
                    let ok = std::str::from_utf8(v).is_ok_and(&keep);
                    last = Some((v.to_vec(), ok));
                    ok
                }
            };
            if ok {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The first partition in `from..=last` with postings of `tenant`.
    pub(super) fn next_partition(&self, tenant: &str, from: i64, last: i64) -> Result<Option<i64>, Error> {
        if from > last {
            return Ok(None);
        }
        let start = keys::tenant_partition_prefix(tenant, from);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_POSTINGS)?);
        it.seek(&start);
        if let Some(k) = it.key() {
            let tenant_len = tenant.len() + 1;
            if k.len() >= tenant_len + 8 && k[..tenant.len()] == *tenant.as_bytes() && k[tenant.len()] == keys::SEP {
                let p = keys::unflip(&k[tenant_len..tenant_len + 8]).ok_or_else(|| corrupt("posting key"))?;
                return Ok((p <= last).then_some(p));
            }
        }
        it.status()?;
        Ok(None)
    }
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().copied().filter(|x| b.binary_search(x).is_err()).collect()
}
