//! The loop that scrapes one target at its slot, every interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::delivery::Delivery;
use pharos_exposition::Format;
use pharos_model::{DEFAULT_TENANT, Labels, METRIC_NAME, Sample, now_ms, stale_nan};
use pharos_storage::SeriesSamples;
use tokio::sync::watch;

use crate::cache::SeriesCache;
use crate::samples::{self, Processed};
use crate::target::{Target, next_slot_delay};
use crate::{ScrapeStats, SharedHealth, TargetHealth};

const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The synthetic series every scrape writes, in Prometheus's order.
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn report_labels(t: &Target, name: &str) -> Labels {
    let mut labels = t.labels.clone();
    labels.set(METRIC_NAME, name);
    labels
}

/// Why a loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Running,
    /// The target left service discovery: every series it wrote gets a
    /// staleness marker.
    Removed,
    /// Another scraper owns the target now: no staleness markers.
    HandedOff,
}

/// Runs until `stop` (the process ends: no staleness markers) or `end`.
///
/// Samples are stamped with the scrape's slot (the aligned time it was
/// scheduled for), not the time the answer came: every scraper computes the
/// same slots for a target, so while two of them scrape it during a
/// hand-off, the second copy of each sample is an exact duplicate (dropped
/// by the TSDB) or a conflicting one (rejected), never a second sample.
pub async fn run(
    t: Target,
    sink: Arc<Delivery>,
    client: Result<reqwest::Client, String>,
    stats: Arc<ScrapeStats>,
    health: SharedHealth,
    mut stop: watch::Receiver<bool>,
    mut end: watch::Receiver<End>,
) {
    let mut state = State::default();
    loop {
        let now = now_ms();
        let slot = now + next_slot_delay(t.key, t.interval_ms, now);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis((slot - now) as u64)) => {}
            _ = stop.changed() => return,
            _ = end.changed() => {
                // A dropped sender without a removal is a shutdown, not a removal.
                if *stop.borrow() || *end.borrow() != End::Removed {
                    return;
                }
                let ts = now_ms();
                let mut batch: Vec<SeriesSamples> = state
                    .cache
                    .take_previous()
                    .into_iter()
                    .chain(REPORT_SERIES.iter().map(|n| report_labels(&t, n)))
                    .map(|labels| SeriesSamples { labels, samples: vec![Sample::new(ts, stale_nan())] })
                    .collect();
                batch.sort_by(|a, b| a.labels.cmp(&b.labels));
                sink.send(DEFAULT_TENANT, batch);
                return;
            }
        }
        if *stop.borrow() || *end.borrow() != End::Running {
            return;
        }
        let ts = slot;
        let started = Instant::now();
        state.cache.begin();
        let result = scrape(&t, &client, ts, &mut state)
            .await
            .unwrap_or_else(|e| Processed { error: Some(e), ..Processed::default() });
        let duration = started.elapsed().as_secs_f64();
        stats.scrapes.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &result.error {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(url = %t.url, error = %e, "scrape failed");
        }
        *health.lock().unwrap_or_else(|e| e.into_inner()) = TargetHealth {
            last_scrape_ms: Some(ts),
            last_duration_s: duration,
            last_error: result.error.clone().unwrap_or_default(),
        };
        let ok = result.error.is_none();
        let Processed { series: mut batch, scraped, post_relabel, .. } = result;
        let (added, gone) = state.cache.finish(ok);
        for labels in gone {
            batch.push(SeriesSamples { labels, samples: vec![Sample::new(ts, stale_nan())] });
        }
        for (name, v) in REPORT_SERIES.iter().zip([
            if ok { 1.0 } else { 0.0 },
            duration,
            scraped as f64,
            post_relabel as f64,
            added as f64,
        ]) {
            batch.push(SeriesSamples { labels: report_labels(&t, name), samples: vec![Sample::new(ts, v)] });
        }
        stats.samples.fetch_add(scraped as u64, Ordering::Relaxed);
        sink.send(DEFAULT_TENANT, batch);
    }
}

/// What a loop keeps across scrapes: the series cache and the body buffer.
#[derive(Default)]
struct State {
    cache: SeriesCache,
    body: Vec<u8>,
}

/// Fetches and processes one scrape, between `state.cache`'s `begin` and
/// `finish`.
async fn scrape(
    t: &Target,
    client: &Result<reqwest::Client, String>,
    ts: i64,
    state: &mut State,
) -> Result<Processed, String> {
    let client = client.as_ref().map_err(Clone::clone)?;
    let mut req = client
        .get(&t.url)
        .header("accept", ACCEPT)
        .header("x-prometheus-scrape-timeout-seconds", format!("{}", t.timeout_ms as f64 / 1000.0))
        .timeout(Duration::from_millis(t.timeout_ms as u64));
    let auth = if t.job.client.reads_files() {
        // Secret files are read at every scrape: blocking I/O, off the async threads.
        let job = t.job.clone();
        tokio::task::spawn_blocking(move || job.client.authorization_header()).await.map_err(|e| e.to_string())??
    } else {
        t.job.client.authorization_header()?
    };
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let format = Format::from_content_type(resp.headers().get("content-type").and_then(|v| v.to_str().ok()));
    let limit = t.job.body_size_limit;
    let mut resp = resp;
    let mut bytes = std::mem::take(&mut state.body);
    bytes.clear();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        bytes.extend_from_slice(&chunk);
        if limit > 0 && bytes.len() as u64 > limit {
            state.body = bytes;
            return Err("body size limit exceeded".into());
        }
    }
    // Processing is CPU work: on the blocking pool, with the cache and the
    // buffer moved there and back.
    let target_labels = t.labels.clone();
    let job = t.job.clone();
    let mut cache = std::mem::take(&mut state.cache);
    let (processed, cache, bytes) = tokio::task::spawn_blocking(move || {
        let body = match String::from_utf8(bytes) {
            Ok(body) => body,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let processed = samples::process(&body, format, &target_labels, &job, ts, &mut cache);
        (processed, cache, body.into_bytes())
    })
    .await
    .map_err(|e| e.to_string())?;
    state.cache = cache;
    state.body = bytes;
    Ok(processed)
}
