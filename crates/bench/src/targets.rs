//! `pharos bench targets`: N synthetic exporters on consecutive loopback
//! ports, for a scraper fleet (Pharos's, Prometheus's, vmagent's) to scrape.
//!
//! Each target serves `/metrics` in the Prometheus text format with S series
//! of the node_exporter-like [`crate::model`], valued at the time of the
//! scrape; churn replaces C series *per target* per minute (a new
//! `cycle_id`). The prometheus.yml for the fleet is printed on stdout; every
//! target also answers `/-/stats` with the fleet's scrape counters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Error;
use crate::http::now_ms;
use crate::model::{self, Churn, FAMILIES};
use crate::stats::si;

/// The exposition of one target with `series` series at `t_ms`.
pub fn render(series: u64, churn: &Churn, t_ms: i64) -> String {
    let mut out = String::with_capacity(series as usize * 96);
    let fams = FAMILIES.len() as u64;
    for (f, fam) in FAMILIES.iter().enumerate() {
        let mut slot = f as u64;
        if slot >= series {
            continue;
        }
        out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", fam.name, fam.help, fam.name, fam.kind.as_str()));
        while slot < series {
            let g = churn.generation(slot, series, t_ms);
            out.push_str(fam.name);
            out.push('{');
            for (i, (name, value)) in model::labels(slot, g).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{name}=\"{value}\""));
            }
            out.push_str(&format!("}} {}\n", model::value(slot, g, t_ms)));
            slot += fams;
        }
    }
    out
}

/// A prometheus.yml scraping `targets` every `interval`.
pub fn prometheus_yml(targets: &[SocketAddr], job: &str, interval: &str) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets:\n"
    );
    for t in targets {
        out.push_str(&format!("          - '{t}'\n"));
    }
    out
}

/// A validated `targets` invocation.
#[derive(Clone, Debug)]
pub struct TargetsConfig {
    pub count: u16,
    pub series_per_target: u64,
    pub listen_base: SocketAddr,
    pub churn_per_minute: u64,
    pub job: String,
    pub scrape_interval: String,
    pub config_out: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub progress: Duration,
    pub summary_json: Option<PathBuf>,
}

struct Target {
    series: u64,
    churn: Churn,
    scrapes: AtomicU64,
}

/// What was served, also written as JSON with `--summary-json`.
#[derive(Debug, serde::Serialize)]
pub struct TargetsReport {
    pub targets: usize,
    pub elapsed_s: f64,
    pub scrapes: u64,
    pub samples: u64,
    pub min_scrapes_per_target: u64,
    pub max_scrapes_per_target: u64,
}

/// Serves the fleet until `--duration` passes or SIGINT/SIGTERM.
pub async fn run(cfg: TargetsConfig) -> Result<TargetsReport, Error> {
    if cfg.count == 0 || cfg.series_per_target == 0 {
        return Err(Error::Invalid("--count and --series-per-target must be positive".into()));
    }
    let start = now_ms();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..cfg.count {
        let port = cfg.listen_base.port().checked_add(i).ok_or_else(|| {
            Error::Invalid(format!("{} targets from port {} run past 65535", cfg.count, cfg.listen_base.port()))
        })?;
        let addr = SocketAddr::new(cfg.listen_base.ip(), port);
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
        listeners.push(l);
        addrs.push(addr);
    }
    let yml = prometheus_yml(&addrs, &cfg.job, &cfg.scrape_interval);
    match &cfg.config_out {
        Some(p) => std::fs::write(p, &yml)?,
        None => print!("{yml}"),
    }
    let targets: Vec<Arc<Target>> = (0..cfg.count)
        .map(|_| {
            Arc::new(Target {
                series: cfg.series_per_target,
                churn: Churn { per_minute: cfg.churn_per_minute, start_ms: start },
                scrapes: AtomicU64::new(0),
            })
        })
        .collect();
    let fleet = Arc::new(targets.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (l, t) in listeners.into_iter().zip(&targets) {
        let state = Served { me: t.clone(), fleet: fleet.clone() };
        let app = Router::new().route("/metrics", get(metrics)).route("/-/stats", get(stats)).with_state(state);
        let mut stop = stop_rx.clone();
        servers.spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    eprintln!(
        "targets: {} targets x {} series on {}..{}, churn {}/min per target",
        cfg.count,
        cfg.series_per_target,
        addrs[0],
        addrs[addrs.len() - 1].port(),
        cfg.churn_per_minute
    );
    let t0 = Instant::now();
    let total = || targets.iter().map(|t| t.scrapes.load(Ordering::Relaxed)).sum::<u64>();
    let mut tick = tokio::time::interval_at((t0 + cfg.progress).into(), cfg.progress);
    let until = async {
        match cfg.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until);
    let term = crate::terminated();
    tokio::pin!(term);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let n = total();
                eprintln!(
                    "targets: {:>5.0} s  scrapes {}  samples {}",
                    t0.elapsed().as_secs_f64(), si(n as f64), si((n * cfg.series_per_target) as f64)
                );
            }
            () = &mut until => break,
            () = &mut term => break,
        }
    }
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    let per: Vec<u64> = targets.iter().map(|t| t.scrapes.load(Ordering::Relaxed)).collect();
    let report = TargetsReport {
        targets: per.len(),
        elapsed_s: t0.elapsed().as_secs_f64(),
        scrapes: per.iter().sum(),
        samples: per.iter().sum::<u64>() * cfg.series_per_target,
        min_scrapes_per_target: per.iter().copied().min().unwrap_or(0),
        max_scrapes_per_target: per.iter().copied().max().unwrap_or(0),
    };
    eprintln!(
        "targets: done in {:.1} s: {} scrapes ({} to {} per target), {} samples served",
        report.elapsed_s, report.scrapes, report.min_scrapes_per_target, report.max_scrapes_per_target, report.samples
    );
    if let Some(p) = &cfg.summary_json {
        crate::write_json(p, &report)?;
    }
    Ok(report)
}

/// What a target's handlers see: itself and the whole fleet (for `/-/stats`).
#[derive(Clone)]
struct Served {
    me: Arc<Target>,
    fleet: Arc<Vec<Arc<Target>>>,
}

/// `/-/stats` on any target: the fleet's counters so far, so a benchmark can
/// measure a window after every target has been scraped once.
async fn stats(State(s): State<Served>) -> impl IntoResponse {
    let per: Vec<u64> = s.fleet.iter().map(|t| t.scrapes.load(Ordering::Relaxed)).collect();
    axum::Json(serde_json::json!({
        "scrapes": per.iter().sum::<u64>(),
        "samples": s.fleet.iter().map(|t| t.scrapes.load(Ordering::Relaxed) * t.series).sum::<u64>(),
        "targets_scraped": per.iter().filter(|n| **n > 0).count(),
    }))
}

async fn metrics(State(s): State<Served>) -> impl IntoResponse {
    let t = s.me;
    t.scrapes.fetch_add(1, Ordering::Relaxed);
    let (series, churn) = (t.series, t.churn);
    let body = tokio::task::spawn_blocking(move || render(series, &churn, now_ms())).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_groups_families_and_counts_series() {
        let text = render(10, &Churn::none(), 1_800_000_000_000);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 10);
        assert_eq!(text.matches("# TYPE").count(), 4);
        assert!(text.starts_with("# HELP node_cpu_seconds_total "));
        assert!(text.contains("# TYPE node_load1 gauge\n"));
        // Every family's samples follow its TYPE line, contiguously.
        let mut current = "";
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&format!("{current}{{")), "{l} outside {current}");
            }
        }
        assert!(text.contains(r#"node_cpu_seconds_total{cpu="0",cycle_id="0",mode="user",series_id="0"} "#), "{text}");
        assert_eq!(render(2, &Churn::none(), 0).matches("# TYPE").count(), 2);
    }

    #[test]
    fn churn_moves_cycle_ids_and_values_follow_the_clock() {
        let c = Churn { per_minute: 60, start_ms: 0 };
        let a = render(8, &c, 0);
        let b = render(8, &c, 3_000);
        assert_eq!(a.matches("cycle_id=\"1\"").count(), 0);
        assert_eq!(b.matches("cycle_id=\"1\"").count(), 3);
    }

    #[test]
    fn yml_lists_every_target() {
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:9100".parse().unwrap(), "127.0.0.1:9101".parse().unwrap()];
        let y = prometheus_yml(&addrs, "bench", "5s");
        assert!(y.contains("scrape_interval: 5s"));
        assert!(y.contains("job_name: bench"));
        assert!(y.contains("- '127.0.0.1:9101'"));
        assert_eq!(y.matches("- '").count(), 2);
    }
}
