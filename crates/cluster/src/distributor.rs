//! The distributor (writes) and the fan-out reader (queries) over all shards.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use pharos_model::{Labels, Matcher, Series, merge_series, now_ms, series_hash};
use pharos_storage::{AppendResult, MetaQuery, SeriesSamples, reject_future};

use crate::{Error, Ring, Shard};

/// Every shard of the cluster and the ring that routes series to them.
pub struct Cluster {
    pub(crate) shards: Vec<Arc<dyn Shard>>,
    ring: Ring<u32>,
    /// Aggregations may be pushed down to the shards (see `pushdown.rs`).
    pub(crate) pushdown: bool,
    /// How far past the wall clock a sample may be (None: no limit).
    future_grace_ms: Option<i64>,
}

/// Samples further in the future than this are rejected by default, as
/// Mimir's `-validation.create-grace-period` does.
pub const DEFAULT_FUTURE_GRACE_MS: i64 = 10 * 60 * 1000;

impl Cluster {
    /// `shards[i]` is shard `i`.
    pub fn new(shards: Vec<Arc<dyn Shard>>) -> Self {
        let ring = Ring::new(0..shards.len() as u32);
        Self { shards, ring, pushdown: true, future_grace_ms: Some(DEFAULT_FUTURE_GRACE_MS) }
    }

    /// How far past the wall clock a sample may be; None accepts any.
    pub fn with_future_grace(mut self, grace_ms: Option<i64>) -> Self {
        self.future_grace_ms = grace_ms;
        self
    }

    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// Shard `i`, for a client that sends to each shard on its own.
    pub fn shard(&self, i: usize) -> Option<&Arc<dyn Shard>> {
        self.shards.get(i)
    }

    /// Splits a batch by owning shard: a pure function of the ring.
    pub fn route(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Vec<Vec<SeriesSamples>> {
        if self.shards.len() == 1 {
            // One owner for everything: hashing every label set would be wasted.
            return vec![batch];
        }
        let mut parts: Vec<Vec<SeriesSamples>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for s in batch {
            let shard = self.ring.owner(series_hash(tenant, &s.labels)).copied().unwrap_or(0) as usize;
            if let Some(p) = parts.get_mut(shard) {
                p.push(s);
            }
        }
        parts
    }

    /// Writes a batch to the owning shards concurrently. Succeeds only if
    /// every shard stored its part; rejections of single samples are
    /// reported in the result. Samples too far in the future are rejected
    /// here, once for every replica of their shard.
    pub async fn append(&self, tenant: &str, mut batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        let mut total = AppendResult::default();
        if let Some(grace) = self.future_grace_ms {
            total.rejected = reject_future(&mut batch, now_ms().saturating_add(grace));
        }
        let parts = self.route(tenant, batch);
        let calls = parts
            .into_iter()
            .zip(&self.shards)
            .filter(|(p, _)| !p.is_empty())
            .map(|(p, shard)| shard.append(tenant, p));
        for r in join_all(calls).await {
            total.merge(r?);
        }
        Ok(total)
    }

    /// Reads every shard (a series may have pieces on several after the
    /// shard count changed) and merges identical series by timestamp.
    pub async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let calls = self.shards.iter().map(|s| s.select(tenant, matchers, mint, maxt));
        let mut all = Vec::new();
        for r in join_all(calls).await {
            all.extend(r?);
        }
        Ok(if self.shards.len() > 1 { merge_series(all) } else { all })
    }

    /// [`Shard::series`] over every shard: the union of their answers,
    /// sorted and cut to the query's limit.
    pub async fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        let calls = self.shards.iter().map(|s| s.series(tenant, q));
        union(join_all(calls).await, q)
    }

    /// [`Shard::label_names`] over every shard.
    pub async fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        let calls = self.shards.iter().map(|s| s.label_names(tenant, q));
        union(join_all(calls).await, q)
    }

    /// [`Shard::label_values`] over every shard.
    pub async fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        let calls = self.shards.iter().map(|s| s.label_values(tenant, name, q));
        union(join_all(calls).await, q)
    }

    pub async fn flush(&self) -> Result<(), Error> {
        for r in join_all(self.shards.iter().map(|s| s.flush())).await {
            r?;
        }
        Ok(())
    }
}

/// The sorted union of the shards' answers, cut to the query's limit: each
/// shard's answer is its first `limit` items, so the first `limit` of the
/// union are among them.
fn union<T: Ord>(answers: Vec<Result<Vec<T>, Error>>, q: &MetaQuery) -> Result<Vec<T>, Error> {
    let mut all = BTreeSet::new();
    for r in answers {
        all.extend(r?);
    }
    Ok(q.truncate(all.into_iter().collect()))
}
