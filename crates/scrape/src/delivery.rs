//! Delivery of scraped samples to the shards: one bounded queue and one
//! sender task per shard, so a slow or unavailable shard never blocks the
//! scrape loops or the other shards.
//!
//! [`Delivery::send`] routes a scrape's series by shard and queues them,
//! without waiting. Each shard's task sends what is queued as one batch,
//! and on failure keeps it and retries with a growing pause (up to
//! [`MAX_BACKOFF`]). A queue holds at most `budget` samples; past that the
//! oldest batches are dropped and counted (`pharos_scrape_dropped_samples_total`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pharos_cluster::{Cluster, Shard};
use pharos_storage::SeriesSamples;
use tokio::sync::Notify;

/// Samples buffered per shard by default (about 50 MB at ~1 KiB per
/// sample with labels, the worst case).
pub const DEFAULT_BUDGET: usize = 50_000;
/// The longest pause between two tries of an unavailable shard.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Counters of the delivery, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub sent_samples: AtomicU64,
    pub dropped_samples: AtomicU64,
    pub failed_sends: AtomicU64,
}

impl DeliveryStats {
    /// Writes the delivery's metrics, `pharos_scrape_*`.
    pub fn write_metrics(&self, e: &mut pharos_exposition::Exposition) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        e.counter("pharos_scrape_sent_samples_total", "Samples delivered to the shards.", get(&self.sent_samples));
        e.counter(
            "pharos_scrape_dropped_samples_total",
            "Samples dropped, oldest first, while a shard was unavailable past the buffer budget.",
            get(&self.dropped_samples),
        );
        e.counter(
            "pharos_scrape_failed_sends_total",
            "Sends to a shard that failed and were retried.",
            get(&self.failed_sends),
        );
    }
}

/// Batches by tenant, oldest first, and the samples they hold.
type Batches = (VecDeque<(String, Vec<SeriesSamples>)>, usize);

struct Queue {
    batches: parking_lot::Mutex<Batches>,
    wake: Notify,
}

/// Per-shard queues over a [`Cluster`].
pub struct Delivery {
    cluster: Arc<Cluster>,
    queues: Vec<Arc<Queue>>,
    budget: usize,
    stats: Arc<DeliveryStats>,
}

fn count(batch: &[SeriesSamples]) -> usize {
    batch.iter().map(|s| s.samples.len()).sum()
}

impl Delivery {
    /// Starts one sender task per shard of `cluster`.
    pub fn start(cluster: Arc<Cluster>, budget: usize) -> Arc<Self> {
        let stats = Arc::new(DeliveryStats::default());
        let mut queues = Vec::new();
        for i in 0..cluster.num_shards() {
            let q = Arc::new(Queue { batches: Default::default(), wake: Notify::new() });
            if let Some(shard) = cluster.shard(i) {
                tokio::spawn(run(shard.clone(), q.clone(), stats.clone()));
            }
            queues.push(q);
        }
        Arc::new(Self { cluster, queues, budget: budget.max(1), stats })
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Queues `batch` for its shards; never waits on a shard.
    pub fn send(&self, tenant: &str, batch: Vec<SeriesSamples>) {
        for (part, q) in self.cluster.route(tenant, batch).into_iter().zip(&self.queues) {
            if part.is_empty() {
                continue;
            }
            let mut g = q.batches.lock();
            g.1 += count(&part);
            g.0.push_back((tenant.to_string(), part));
            while g.1 > self.budget {
                let Some((_, old)) = g.0.pop_front() else { break };
                let n = count(&old);
                g.1 -= n;
                self.stats.dropped_samples.fetch_add(n as u64, Ordering::Relaxed);
            }
            drop(g);
            q.wake.notify_one();
        }
    }

    /// Samples waiting for shard `i`.
    pub fn queued(&self, i: usize) -> usize {
        self.queues.get(i).map_or(0, |q| q.batches.lock().1)
    }
}

/// Sends one shard's queue: the first tenant's batches merged into one call.
async fn run(shard: Arc<dyn Shard>, q: Arc<Queue>, stats: Arc<DeliveryStats>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let next = {
            let mut g = q.batches.lock();
            match g.0.pop_front() {
                None => None,
                Some((tenant, mut batch)) => {
                    while g.0.front().is_some_and(|(t, _)| *t == tenant) {
                        if let Some((_, more)) = g.0.pop_front() {
                            batch.extend(more);
                        }
                    }
                    g.1 -= count(&batch);
                    Some((tenant, batch))
                }
            }
        };
        let Some((tenant, batch)) = next else {
            if Arc::strong_count(&q) == 1 {
                return; // the Delivery is gone
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), q.wake.notified()).await;
            continue;
        };
        let n = count(&batch);
        match shard.append_borrowed(&tenant, &batch).await {
            Ok(_) => {
                stats.sent_samples.fetch_add(n as u64, Ordering::Relaxed);
                backoff = Duration::from_millis(50);
            }
            Err(e) => {
                stats.failed_sends.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, samples = n, "sending to a shard failed; will retry");
                {
                    // Back to the front, unless newer samples filled the budget meanwhile.
                    let mut g = q.batches.lock();
                    g.1 += n;
                    g.0.push_front((tenant, batch));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;
    use pharos_cluster::{Error, LocalShard};
    use pharos_model::{Labels, Matcher, Sample, Series};
    use pharos_storage::{AppendResult, MemStorage, MetaQuery, Storage};

    use super::*;

    /// A shard whose appends fail while `down` is set.
    struct Flaky {
        inner: LocalShard,
        down: AtomicBool,
    }

    #[async_trait]
    impl Shard for Flaky {
        async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
            if self.down.load(Ordering::Relaxed) {
                return Err(Error::Unavailable { shard: 0, msg: "down".into() });
            }
            self.inner.append(tenant, batch).await
        }
        async fn select(&self, t: &str, m: &[Matcher], a: i64, b: i64) -> Result<Vec<Series>, Error> {
            self.inner.select(t, m, a, b).await
        }
        async fn series(&self, t: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
            self.inner.series(t, q).await
        }
        async fn label_names(&self, t: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
            self.inner.label_names(t, q).await
        }
        async fn label_values(&self, t: &str, n: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
            self.inner.label_values(t, n, q).await
        }
        async fn flush(&self) -> Result<(), Error> {
            self.inner.flush().await
        }
    }

    fn stored(s: &MemStorage) -> usize {
        let m = [Matcher::equal("__name__", "m")];
        s.select("default", &m, 0, i64::MAX).unwrap().iter().map(|x| x.samples.len()).sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_shard_buffers_within_budget_drops_oldest_and_blocks_no_one() {
        let (bad_store, good_store) = (Arc::new(MemStorage::new()), Arc::new(MemStorage::new()));
        let flaky = Arc::new(Flaky { inner: LocalShard::new(bad_store.clone()), down: AtomicBool::new(true) });
        let cluster = Arc::new(Cluster::new(vec![flaky.clone(), Arc::new(LocalShard::new(good_store.clone()))]));
        let delivery = Delivery::start(cluster.clone(), 100);
        let (mut to_bad, mut to_good) = (0, 0);
        for ts in 0..50i64 {
            let batch: Vec<SeriesSamples> = (0..10)
                .map(|i| SeriesSamples {
                    labels: Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                    samples: vec![Sample::new(ts * 1000, 1.0)],
                })
                .collect();
            let parts = cluster.route("default", batch.clone());
            (to_bad, to_good) = (to_bad + parts[0].len(), to_good + parts[1].len());
            delivery.send("default", batch); // returns at once though shard 0 is down
            tokio::time::sleep(Duration::from_millis(5)).await; // scrapes come spread out
        }
        assert!(to_bad > 100 && to_good > 0, "{to_bad} {to_good}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stored(&good_store) < to_good {
            assert!(
                std::time::Instant::now() < deadline,
                "the healthy shard was held up: {} of {to_good}, sent {:?}",
                stored(&good_store),
                delivery.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dropped = delivery.stats().dropped_samples.load(Ordering::Relaxed) as usize;
        assert!(delivery.queued(0) <= 100 + 10, "{}", delivery.queued(0));
        assert!(dropped >= to_bad - 110, "{dropped} of {to_bad}");
        assert_eq!(stored(&bad_store), 0);

        // Back up: what was kept arrives, the newest included.
        flaky.down.store(false, Ordering::Relaxed);
        while delivery.queued(0) > 0 || stored(&bad_store) + dropped < to_bad {
            assert!(std::time::Instant::now() < deadline, "queue not drained: {}", delivery.queued(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stored(&bad_store) + dropped, to_bad);
        let m = [Matcher::equal("__name__", "m")];
        let newest = bad_store
            .select("default", &m, 0, i64::MAX)
            .unwrap()
            .iter()
            .filter_map(|s| s.samples.last().map(|x| x.t))
            .max();
        assert_eq!(newest, Some(49_000));
    }
}
