//! An in-memory [`Queryable`]: for tests and for evaluating over data already at hand.

use pharos_model::{Matcher, Series, merge_series};

use crate::{Queryable, SelectError};

/// A fixed set of series held in memory. Series sharing a label set are merged.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueryable {
    series: Vec<Series>,
}

impl MemoryQueryable {
    pub fn new(series: Vec<Series>) -> Self {
        Self { series: merge_series(series) }
    }

    /// Adds series (merging samples into existing series with the same labels).
    pub fn extend(&mut self, series: Vec<Series>) {
        let mut all = std::mem::take(&mut self.series);
        all.extend(series);
        self.series = merge_series(all);
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }
}

#[async_trait::async_trait]
impl Queryable for MemoryQueryable {
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError> {
        let mut out = Vec::new();
        for s in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                continue;
            }
            let lo = s.samples.partition_point(|x| x.t < mint);
            let hi = s.samples.partition_point(|x| x.t <= maxt);
            if lo < hi {
                out.push(Series::new(s.labels.clone(), s.samples[lo..hi].to_vec()));
            }
        }
        Ok(out)
    }
}
