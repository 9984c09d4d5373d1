//! Scraping: Prometheus-compatible pull of metrics from targets.
//!
//! [`config`] reads a `prometheus.yml`; [`discovery`] yields each job's
//! target groups (static, and files polled for changes); [`target`] turns
//! groups into targets through `relabel_configs` ([`relabel`]) with stable
//! keys (pure); [`samples`] applies `metric_relabel_configs` and the limits
//! to each scrape (pure), with [`cache`] remembering per target what each
//! series text became (pure). [`Scraper`] keeps one loop per target this scraper
//! owns on the scraper [`Ring`](pharos_cluster::Ring), starting and stopping
//! loops as discovery changes, and hands every scrape (samples, `up`,
//! `scrape_*` series, staleness markers) to [`delivery`], which queues it
//! per shard of the [`pharos_cluster::Cluster`].

pub mod cache;
pub mod config;
pub mod delivery;
pub mod discovery;
pub mod http;
pub mod kubernetes;
mod md5;
pub mod membership;
pub mod relabel;
mod reload;
pub mod samples;
mod scrape_loop;
pub mod target;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pharos_cluster::{Cluster, Ring};
use tokio::sync::watch;

pub use config::Config;
pub use reload::Reloader;
pub use target::Target;

use crate::config::ScrapeConfig;
use crate::discovery::{FileDiscovery, TargetGroup};
use crate::kubernetes::KubernetesDiscovery;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
}

/// How long the manager lets watch-based discovery changes gather before
/// it recomputes the targets (Prometheus batches its updates every 5 s).
const SD_SETTLE: Duration = Duration::from_millis(500);

/// Counters of the scrape loops, for `/metrics`.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    pub scrapes: AtomicU64,
    pub failures: AtomicU64,
    pub samples: AtomicU64,
    pub targets: AtomicU64,
}

impl ScrapeStats {
    /// Writes the scrape loops' metrics, `pharos_scrape_*`.
    pub fn write_metrics(&self, e: &mut pharos_exposition::Exposition) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        e.counter("pharos_scrape_scrapes_total", "Scrapes attempted.", get(&self.scrapes));
        e.counter("pharos_scrape_failures_total", "Scrapes that failed.", get(&self.failures));
        e.counter("pharos_scrape_samples_total", "Samples scraped.", get(&self.samples));
        e.gauge("pharos_scrape_targets", "Targets this scraper owns.", get(&self.targets));
    }
}

/// The last scrape of a target, for the targets page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHealth {
    /// When the last scrape started (ms since the epoch); `None` before the first.
    pub last_scrape_ms: Option<i64>,
    pub last_duration_s: f64,
    /// Empty when the last scrape succeeded.
    pub last_error: String,
}

/// The health of a target shared between its loop and the targets page.
pub type SharedHealth = Arc<Mutex<TargetHealth>>;

/// Runs the scrape loops of the targets this scraper owns.
pub struct Scraper {
    stats: Arc<ScrapeStats>,
    stop: watch::Sender<bool>,
    active: Arc<Mutex<Vec<(Target, SharedHealth)>>>,
    dropped: Arc<Mutex<Vec<DroppedTarget>>>,
    leaving: Arc<std::sync::atomic::AtomicBool>,
    delivery: Arc<delivery::Delivery>,
    reload: tokio::sync::mpsc::UnboundedSender<Config>,
}

/// A discovered target that `relabel_configs` dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedTarget {
    pub job: String,
    pub discovered_labels: pharos_model::Labels,
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
        let (_fixed, members) = watch::channel(members.to_vec());
        Self::start_with_members(config, members, me, sink)
    }

    /// Starts scraping the targets `me` owns among the live `members`
    /// (see [`membership::Membership`]), following their changes: a target
    /// handed to another scraper stops without staleness markers, one
    /// taken over starts at its aligned slot.
    pub fn start_with_members(
        config: &Config,
        members: watch::Receiver<Vec<String>>,
        me: &str,
        sink: Arc<Cluster>,
    ) -> Self {
        let stats = Arc::new(ScrapeStats::default());
        let (stop, rx) = watch::channel(false);
        let active = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let sd_changed = Arc::new(tokio::sync::Notify::new());
        let jobs = config.scrape_configs.iter().map(|j| Job::new(j.clone(), None, &sd_changed)).collect();
        let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
        let delivery = delivery::Delivery::start(sink, delivery::DEFAULT_BUDGET);
        let manager = Manager {
            jobs,
            members,
            me: me.to_string(),
            sink: delivery.clone(),
            stats: stats.clone(),
            stop: rx,
            running: HashMap::new(),
            active: active.clone(),
            dropped: dropped.clone(),
            sd_changed,
            reloads,
        };
        tokio::spawn(manager.run());
        Self { stats, stop, active, dropped, leaving: Default::default(), delivery, reload }
    }

    /// Applies a new (validated) configuration: targets whose job and
    /// labels are unchanged keep their loops (no gap, no restart), targets
    /// that are gone stop with staleness markers, new ones start at their
    /// slot. Jobs whose settings are unchanged keep their discovery state.
    pub fn reload(&self, config: &Config) {
        let _ = self.reload.send(config.clone());
    }

    /// Announces that this scraper is leaving: its [`membership::MEMBER_PATH`]
    /// answers 503 from now on, so peers take its targets over while it
    /// still scrapes them (both write the same aligned timestamps, so the
    /// overlap stores each sample once).
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Counters of the delivery to the shards.
    pub fn delivery_stats(&self) -> Arc<delivery::DeliveryStats> {
        self.delivery.stats()
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Arc<ScrapeStats> {
        self.stats.clone()
    }

    /// The targets scraped now, for a targets page.
    pub fn targets(&self) -> Vec<Target> {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, _)| t.clone()).collect()
    }

    /// The targets scraped now with their last scrape.
    pub fn target_health(&self) -> Vec<(Target, TargetHealth)> {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.iter().map(|(t, h)| (t.clone(), h.lock().unwrap_or_else(|e| e.into_inner()).clone())).collect()
    }

    /// The discovered targets relabeling dropped (all of them, not only
    /// those this scraper would own), for a targets page.
    pub fn dropped_targets(&self) -> Vec<DroppedTarget> {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops every loop (without staleness markers: the process is going
    /// away or handing its targets to another scraper).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// One job and the state of its service discovery.
struct Job {
    config: Arc<ScrapeConfig>,
    /// The error fails every scrape of the job (a bad certificate file).
    client: Result<reqwest::Client, String>,
    statics: Vec<TargetGroup>,
    files: Vec<FileDiscovery>,
    kubernetes: Vec<KubernetesDiscovery>,
}

impl Job {
    /// A job with its client built and its discoveries started, taking
    /// over those of `previous` (the job of the same name before a reload)
    /// whose configuration is unchanged, with their state: no re-read, no
    /// re-list.
    fn new(config: ScrapeConfig, previous: Option<Job>, sd_changed: &Arc<tokio::sync::Notify>) -> Self {
        let client = config.client.build_client().inspect_err(|e| {
            tracing::error!(job = %config.job_name, error = %e, "every scrape of this job will fail");
        });
        let (mut old_files, mut old_kube) = previous.map(|p| (p.files, p.kubernetes)).unwrap_or_default();
        let files = config
            .file_sd_configs
            .iter()
            .map(|c| match old_files.iter().position(|f| f.config() == c) {
                Some(i) => old_files.swap_remove(i),
                None => FileDiscovery::new(c.clone()),
            })
            .collect();
        let kubernetes = config
            .kubernetes_sd_configs
            .iter()
            .map(|c| match old_kube.iter().position(|k| k.config() == c) {
                Some(i) => old_kube.swap_remove(i),
                None => KubernetesDiscovery::start(c.clone(), sd_changed.clone()),
            })
            .collect();
        Job { client, statics: target::static_groups(&config), files, kubernetes, config: Arc::new(config) }
    }
}

/// Follows service discovery and keeps one scrape loop per owned target.
struct Manager {
    jobs: Vec<Job>,
    members: watch::Receiver<Vec<String>>,
    me: String,
    sink: Arc<delivery::Delivery>,
    stats: Arc<ScrapeStats>,
    stop: watch::Receiver<bool>,
    /// The running loops by target key, each with its end signal.
    running: HashMap<u64, Running>,
    active: Arc<Mutex<Vec<(Target, SharedHealth)>>>,
    dropped: Arc<Mutex<Vec<DroppedTarget>>>,
    /// Woken by watch-based discoveries (Kubernetes) when their groups change.
    sd_changed: Arc<tokio::sync::Notify>,
    reloads: tokio::sync::mpsc::UnboundedReceiver<Config>,
}

/// A running scrape loop.
struct Running {
    end: watch::Sender<scrape_loop::End>,
    health: SharedHealth,
    /// The job it runs under: a reload that changes how the job scrapes
    /// restarts it (a change of its service discovery alone does not).
    job: Arc<ScrapeConfig>,
}

impl Manager {
    async fn run(mut self) {
        let mut first = true;
        let mut members_open = true;
        let mut resync = false;
        loop {
            let poll_ms = self.jobs.iter().flat_map(|j| j.files.iter()).map(FileDiscovery::poll_interval_ms).min();
            let changed = if poll_ms.is_some() {
                // File reads are blocking I/O: off the async threads.
                let mut jobs = std::mem::take(&mut self.jobs);
                let refreshed = tokio::task::spawn_blocking(move || {
                    let now = scrape_loop_now_ms();
                    let mut changed = false;
                    for f in jobs.iter_mut().flat_map(|j| j.files.iter_mut()) {
                        changed |= f.refresh(now);
                    }
                    (jobs, changed)
                })
                .await;
                match refreshed {
                    Ok((jobs, changed)) => {
                        self.jobs = jobs;
                        changed
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "service discovery refresh failed; targets stay as they are");
                        return;
                    }
                }
            } else {
                false
            };
            if changed || first || resync {
                first = false;
                resync = false;
                self.sync();
            }
            let wait = Duration::from_millis(poll_ms.unwrap_or(3_600_000) as u64);
            let members = &mut self.members;
            let members_changed = async move {
                if members_open { members.changed().await.is_ok() } else { std::future::pending().await }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => return,
                ok = members_changed => {
                    // A closed channel is a fixed membership.
                    members_open = ok;
                    resync = ok;
                }
                _ = self.sd_changed.notified() => {
                    // Let a burst of watch events (a rollout) settle into one resync.
                    tokio::time::sleep(SD_SETTLE).await;
                    resync = true;
                }
                Some(config) = self.reloads.recv() => {
                    self.apply_config(config);
                    resync = true;
                }
            }
            if *self.stop.borrow() {
                return;
            }
        }
    }

    /// Takes a new configuration: an unchanged job stays as it is; a
    /// changed one keeps the discoveries whose configuration is unchanged;
    /// dropped jobs stop their watches. Loops are kept or not by [`Self::sync`].
    fn apply_config(&mut self, config: Config) {
        let mut old = std::mem::take(&mut self.jobs);
        for j in config.scrape_configs {
            match old.iter().position(|o| *o.config == j) {
                Some(i) => self.jobs.push(old.swap_remove(i)),
                None => {
                    let previous = old.iter().position(|o| o.config.job_name == j.job_name).map(|i| old.swap_remove(i));
                    self.jobs.push(Job::new(j, previous, &self.sd_changed));
                }
            }
        }
        tracing::info!(jobs = self.jobs.len(), "scrape configuration applied");
    }

    /// Starts loops for new targets and stops those of vanished ones.
    fn sync(&mut self) {
        let mut all = Vec::new();
        let mut dropped = Vec::new();
        for job in &self.jobs {
            let watched: Vec<TargetGroup> = job.kubernetes.iter().flat_map(KubernetesDiscovery::groups).collect();
            let groups = job.statics.iter().chain(job.files.iter().flat_map(|f| f.groups())).chain(watched.iter());
            let found = target::discover(&job.config, groups);
            all.extend(found.active);
            dropped.extend(
                found
                    .dropped
                    .into_iter()
                    .map(|l| DroppedTarget { job: job.config.job_name.clone(), discovered_labels: l }),
            );
        }
        *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) = dropped;
        let discovered: std::collections::HashSet<u64> = all.iter().map(|t| t.key).collect();
        let members = self.members.borrow_and_update().clone();
        let owned = owned_targets(all, &members, &self.me);
        self.stats.targets.store(owned.len() as u64, Ordering::Relaxed);
        let jobs: HashMap<u64, &Arc<ScrapeConfig>> = owned.iter().map(|t| (t.key, &t.job)).collect();
        self.running.retain(|key, r| {
            let same = jobs.get(key).map(|j| Arc::ptr_eq(j, &r.job) || j.same_scrape_settings(&r.job));
            let decision = loop_decision(same, discovered.contains(key));
            if let Some(end) = decision {
                let _ = r.end.send(end);
                tracing::info!(target_key = key, ?end, "stopping the scrape of a target");
            }
            decision.is_none()
        });
        for t in &owned {
            if self.running.contains_key(&t.key) {
                continue;
            }
            let Some(job) = self.jobs.iter().find(|j| Arc::ptr_eq(&j.config, &t.job)) else { continue };
            let (end, end_rx) = watch::channel(scrape_loop::End::Running);
            let health = SharedHealth::default();
            self.running.insert(t.key, Running { end, health: health.clone(), job: t.job.clone() });
            tracing::info!(job = %t.job.job_name, url = %t.url, "scraping target");
            tokio::spawn(scrape_loop::run(
                t.clone(),
                self.sink.clone(),
                job.client.clone(),
                self.stats.clone(),
                health,
                self.stop.clone(),
                end_rx,
            ));
        }
        let active =
            owned.into_iter().filter_map(|t| self.running.get(&t.key).map(|r| (t, r.health.clone()))).collect();
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = active;
    }
}

/// What happens to a running loop: `None` keeps it; otherwise how it ends.
/// `owned_same_job` is `None` when this scraper no longer owns the target,
/// else whether its job still scrapes the way the loop does (a reload
/// changed the job's scrape settings if not).
/// A target still discovered but owned elsewhere, or restarted under its
/// changed job, ends without staleness markers (its series go on); one
/// that left discovery ends with them.
fn loop_decision(owned_same_job: Option<bool>, still_discovered: bool) -> Option<scrape_loop::End> {
    match owned_same_job {
        Some(true) => None,
        Some(false) => Some(scrape_loop::End::HandedOff),
        None if still_discovered => Some(scrape_loop::End::HandedOff),
        None => Some(scrape_loop::End::Removed),
    }
}

fn scrape_loop_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::scrape_loop::End;
    use super::*;

    #[test]
    fn reload_keeps_unchanged_loops_and_marks_only_removed_targets_stale() {
        assert_eq!(loop_decision(Some(true), true), None, "unchanged target keeps running");
        assert_eq!(loop_decision(Some(false), true), Some(End::HandedOff), "changed job restarts, series go on");
        assert_eq!(loop_decision(None, true), Some(End::HandedOff), "owned elsewhere now");
        assert_eq!(loop_decision(None, false), Some(End::Removed), "gone from discovery: staleness markers");
    }
}
