//! The loop that scrapes one target at its slot, every interval.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pharos_cluster::Cluster;
use pharos_exposition::{Format, parse};
use pharos_model::{DEFAULT_TENANT, Labels, METRIC_NAME, Sample, stale_nan};
use pharos_tsdb::SeriesSamples;
use tokio::sync::watch;

use crate::ScrapeStats;
use crate::target::{Target, next_slot_delay, sample_labels};

const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What one scrape produced, before it is written.
struct Outcome {
    series: Vec<SeriesSamples>,
    /// Label sets that get staleness tracking (no explicit timestamp).
    tracked: HashSet<Labels>,
    scraped: usize,
}

pub async fn run(
    t: Target,
    sink: Arc<Cluster>,
    client: reqwest::Client,
    stats: Arc<ScrapeStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut previous: HashSet<Labels> = HashSet::new();
    loop {
        let delay = next_slot_delay(t.key, t.job.interval_ms, now_ms());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay as u64)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let ts = now_ms();
        let started = Instant::now();
        let result = scrape(&t, &client, ts).await;
        let duration = started.elapsed().as_secs_f64();
        stats.scrapes.fetch_add(1, Ordering::Relaxed);
        let (mut batch, tracked, up, scraped) = match result {
            Ok(o) => (o.series, o.tracked, 1.0, o.scraped),
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(url = %t.url, error = %e, "scrape failed");
                (Vec::new(), HashSet::new(), 0.0, 0)
            }
        };
        let added = tracked.difference(&previous).count();
        for gone in previous.difference(&tracked) {
            batch.push(SeriesSamples { labels: gone.clone(), samples: vec![Sample::new(ts, stale_nan())] });
        }
        for (name, v) in [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", scraped as f64),
            ("scrape_series_added", added as f64),
        ] {
            let mut labels = t.labels.clone();
            labels.set(METRIC_NAME, name);
            batch.push(SeriesSamples { labels, samples: vec![Sample::new(ts, v)] });
        }
        stats.samples.fetch_add(scraped as u64, Ordering::Relaxed);
        previous = tracked;
        if let Err(e) = sink.append(DEFAULT_TENANT, batch).await {
            tracing::warn!(url = %t.url, error = %e, "writing scraped samples failed");
        }
    }
}

async fn scrape(t: &Target, client: &reqwest::Client, ts: i64) -> Result<Outcome, String> {
    let resp = client
        .get(&t.url)
        .header("accept", ACCEPT)
        .header("x-prometheus-scrape-timeout-seconds", format!("{}", t.job.timeout_ms as f64 / 1000.0))
        .timeout(Duration::from_millis(t.job.timeout_ms as u64))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let format = Format::from_content_type(resp.headers().get("content-type").and_then(|v| v.to_str().ok()));
    let body = resp.text().await.map_err(|e| e.to_string())?;
    let target_labels = t.labels.clone();
    let job = t.job.clone();
    tokio::task::spawn_blocking(move || {
        let parsed = parse(&body, format).map_err(|e| e.to_string())?;
        if job.sample_limit > 0 && parsed.samples.len() as u64 > job.sample_limit {
            return Err(format!("sample limit exceeded: {} > {}", parsed.samples.len(), job.sample_limit));
        }
        let scraped = parsed.samples.len();
        let mut tracked = HashSet::with_capacity(scraped);
        let mut series = Vec::with_capacity(scraped);
        for s in parsed.samples {
            let labels = sample_labels(&target_labels, &s.labels, job.honor_labels);
            let t = match s.timestamp_ms {
                Some(explicit) if job.honor_timestamps => explicit,
                _ => {
                    tracked.insert(labels.clone());
                    ts
                }
            };
            series.push(SeriesSamples { labels, samples: vec![Sample::new(t, s.value)] });
        }
        Ok(Outcome { series, tracked, scraped })
    })
    .await
    .map_err(|e| e.to_string())?
}
