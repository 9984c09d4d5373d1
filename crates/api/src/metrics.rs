//! Pharos's own metrics in the Prometheus text format.
//!
//! Each role registers collectors: closures that append their current
//! values when `/metrics` is scraped. Values are read from atomics owned by
//! the code that measures them, so scraping never blocks the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use parking_lot::RwLock;

type Collector = Box<dyn Fn(&mut Exposition) + Send + Sync>;

/// The registry of one process.
#[derive(Default)]
pub struct Metrics {
    collectors: RwLock<Vec<Collector>>,
    pub http_requests: Counters,
    pub remote_write_samples: AtomicU64,
    pub remote_write_rejected: AtomicU64,
}

/// A small set of counters keyed by a bounded label value.
#[derive(Default)]
pub struct Counters(RwLock<Vec<(String, Arc<AtomicU64>)>>);

impl Counters {
    pub fn inc(&self, key: &str) {
        if let Some((_, c)) = self.0.read().iter().find(|(k, _)| k == key) {
            c.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut w = self.0.write();
        match w.iter().find(|(k, _)| k == key) {
            Some((_, c)) => c.fetch_add(1, Ordering::Relaxed),
            None => {
                w.push((key.to_string(), Arc::new(AtomicU64::new(1))));
                0
            }
        };
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.0.read().iter().map(|(k, c)| (k.clone(), c.load(Ordering::Relaxed))).collect()
    }
}

pub use pharos_exposition::Exposition;

impl Metrics {
    pub fn new() -> Arc<Self> {
        let m = Arc::new(Self::default());
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        m.register(move |e| {
            e.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", started);
            if let Some((cpu, rss)) = process_stats() {
                e.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", cpu);
                e.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss);
            }
            e.family(
                "pharos_build_info",
                "gauge",
                "Pharos build information.",
                &[(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
            );
        });
        m
    }

    pub fn register(&self, c: impl Fn(&mut Exposition) + Send + Sync + 'static) {
        self.collectors.write().push(Box::new(c));
    }

    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        let reqs = self.http_requests.snapshot();
        let samples: Vec<(Vec<(&str, &str)>, f64)> =
            reqs.iter().map(|(k, v)| (vec![("handler", k.as_str())], *v as f64)).collect();
        let refs: Vec<(&[(&str, &str)], f64)> = samples.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
        e.family("pharos_http_requests_total", "counter", "HTTP API requests by handler.", &refs);
        e.counter(
            "pharos_remote_write_samples_total",
            "Samples received over remote_write and stored.",
            self.remote_write_samples.load(Ordering::Relaxed) as f64,
        );
        e.counter(
            "pharos_remote_write_rejected_samples_total",
            "Samples received over remote_write and rejected.",
            self.remote_write_rejected.load(Ordering::Relaxed) as f64,
        );
        for c in self.collectors.read().iter() {
            c(&mut e);
        }
        e.into_text()
    }
}

pub async fn handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render())
}

/// CPU seconds and resident bytes of this process, from /proc.
fn process_stats() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: f64 = f.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss_pages * 4096.0))
}
