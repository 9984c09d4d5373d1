//! Scraping: Prometheus-compatible pull of metrics from targets.
//!
//! [`config`] reads a `prometheus.yml`; [`target`] turns it into targets with
//! their labels and stable keys (pure); [`Scraper`] runs one loop per target
//! this scraper owns on the scraper [`Ring`](pharos_cluster::Ring), and
//! writes every scrape (samples, `up`, `scrape_*` series, staleness markers)
//! through the distributor ([`pharos_cluster::Cluster`]).

pub mod config;
mod scrape_loop;
pub mod target;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pharos_cluster::{Cluster, Ring};
use tokio::sync::watch;

pub use config::Config;
pub use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
}

/// Counters of the scrape loops, for `/metrics`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    pub scrapes: AtomicU64,
    pub failures: AtomicU64,
    pub samples: AtomicU64,
    pub targets: AtomicU64,
}

/// Runs the scrape loops of the targets this scraper owns.
pub struct Scraper {
    stats: Arc<ScrapeStats>,
    stop: watch::Sender<bool>,
}

/// The targets `me` owns among `members` (all targets when alone).
pub fn owned_targets(all: Vec<Target>, members: &[String], me: &str) -> Vec<Target> {
    if members.len() <= 1 {
        return all;
    }
    let ring = Ring::new(members.iter().cloned());
    all.into_iter().filter(|t| ring.owner(t.key).map(String::as_str) == Some(me)).collect()
}

impl Scraper {
    /// Starts scraping. `members` are the ids of all scrapers (empty or one
    /// for a lone scraper) and `me` this one's id.
    pub fn start(config: &Config, members: &[String], me: &str, sink: Arc<Cluster>) -> Self {
        let stats = Arc::new(ScrapeStats::default());
        let (stop, rx) = watch::channel(false);
        let owned = owned_targets(target::targets(config), members, me);
        stats.targets.store(owned.len() as u64, Ordering::Relaxed);
        let client = reqwest::Client::builder().build().unwrap_or_default();
        let mut seen = HashSet::new();
        for t in owned {
            seen.insert(t.key);
            tracing::info!(job = %t.job.job_name, url = %t.url, "scraping target");
            tokio::spawn(scrape_loop::run(t, sink.clone(), client.clone(), stats.clone(), rx.clone()));
        }
        Self { stats, stop }
    }

    pub fn stats(&self) -> Arc<ScrapeStats> {
        self.stats.clone()
    }

    /// Stops every loop (without staleness markers: the process is going
    /// away or handing its targets to another scraper).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop();
    }
}
