//! Bounded in-flight write data per shard.
//!
//! A [`RemoteShard`](crate::RemoteShard) holds every batch it is sending
//! (or retrying, while its shard elects a leader) in memory. Without a bound,
//! a slow or leaderless shard makes the distributor's memory grow with every
//! write that arrives meanwhile. [`InflightBytes`] is a byte budget: a write
//! takes its batch's estimated size from the budget before it is sent and
//! gives it back when it is answered, so once a shard holds `limit` bytes in
//! flight further writers wait, and the wait reaches the remote-write client
//! as backpressure (a slower answer) instead of as memory.
//!
//! The cost of a batch ([`batch_cost`]) is a pure function; a batch larger
//! than the whole budget takes the whole budget, so it is sent alone rather
//! than never.

use std::sync::Arc;

use pharos_storage::SeriesSamples;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Error;

/// Default budget of write bytes in flight to one shard.
pub const DEFAULT_INFLIGHT_BYTES: u32 = 64 << 20;

/// Bytes a sample takes in a batch (timestamp and value).
const SAMPLE_BYTES: usize = 16;
/// Bytes a series or a label takes besides its text (vectors, lengths).
const OVERHEAD_BYTES: usize = 24;

/// The estimated in-memory size of `batch`, capped at `limit`.
pub fn batch_cost(batch: &[SeriesSamples], limit: u32) -> u32 {
    let bytes: usize = batch
        .iter()
        .map(|s| {
            let labels: usize = s.labels.iter().map(|l| l.name.len() + l.value.len() + OVERHEAD_BYTES).sum();
            labels + s.samples.len() * SAMPLE_BYTES + OVERHEAD_BYTES
        })
        .sum();
    u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, limit.max(1))
}

/// A shard's budget of write bytes in flight (see the module overview).
#[derive(Clone)]
pub struct InflightBytes {
    sem: Arc<Semaphore>,
    limit: u32,
}

impl InflightBytes {
    pub fn new(limit: u32) -> Self {
        let limit = limit.max(1);
        Self { sem: Arc::new(Semaphore::new(limit as usize)), limit }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Bytes of the budget not taken now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Waits until `batch` fits in the budget and takes its share; the
    /// share is given back when the permit is dropped.
    pub async fn acquire(&self, batch: &[SeriesSamples]) -> Result<OwnedSemaphorePermit, Error> {
        self.sem
            .clone()
            .acquire_many_owned(batch_cost(batch, self.limit))
            .await
            .map_err(|_| Error::Internal("shard write budget closed".into()))
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use pharos_model::{Labels, Sample};

    use super::*;

    fn batch(series: usize, samples: usize) -> Vec<SeriesSamples> {
        (0..series)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                samples: (0..samples).map(|t| Sample::new(t as i64, 1.0)).collect(),
            })
            .collect()
    }

    #[test]
    fn cost_grows_with_series_and_samples_and_is_capped() {
        let small = batch_cost(&batch(1, 1), u32::MAX);
        assert!(batch_cost(&batch(2, 1), u32::MAX) > small);
        assert_eq!(batch_cost(&batch(1, 11), u32::MAX), small + 10 * SAMPLE_BYTES as u32);
        assert_eq!(batch_cost(&batch(1000, 100), 1000), 1000);
        assert_eq!(batch_cost(&[], 1000), 1, "an empty batch still takes a permit");
    }

    #[tokio::test]
    async fn a_full_budget_holds_writers_back_until_a_write_is_answered() {
        let one = batch_cost(&batch(10, 10), u32::MAX);
        // Room for two such batches, not three.
        let budget = InflightBytes::new(one * 2 + one / 2);
        let first = budget.acquire(&batch(10, 10)).await.unwrap();
        let second = budget.acquire(&batch(10, 10)).await.unwrap();
        // A small batch that fits in what is left goes at once.
        let small = budget.acquire(&batch(1, 1)).now_or_never();
        assert!(small.is_some(), "a batch that fits waited");
        let third_batch = batch(10, 10);
        let mut third = Box::pin(budget.acquire(&third_batch));
        assert!((&mut third).now_or_never().is_none(), "a third batch got in past the budget");
        // Waiters are served in order: a small batch does not overtake it.
        assert!(budget.acquire(&batch(1, 1)).now_or_never().is_none(), "a later batch overtook a waiting one");
        drop(small);
        drop(first);
        let third = third.now_or_never().expect("the third batch still waits after one was answered").unwrap();
        drop((second, third));
        assert_eq!(budget.available(), budget.limit() as usize, "bytes leaked from the budget");
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_goes_alone() {
        let budget = InflightBytes::new(100);
        let big = budget.acquire(&batch(100, 100)).await.unwrap();
        assert_eq!(budget.available(), 0);
        assert!(budget.acquire(&batch(1, 1)).now_or_never().is_none());
        drop(big);
        assert!(budget.acquire(&batch(1, 1)).now_or_never().is_some());
    }
}
