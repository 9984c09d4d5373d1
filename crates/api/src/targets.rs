//! `/api/v1/targets` in Prometheus's JSON shape, with a `scraper` field on
//! each active target naming the scraper that owns it.
//!
//! A scraper (and `pharos up`) answers from its own [`Scraper`]; the gateway
//! asks every scraper over HTTP and concatenates the answers (dropped
//! targets, which every scraper sees alike, once). A scraper that does not
//! answer is named in `warnings`. Query parameters as Prometheus's:
//! `state` (`active`, `dropped`, `any`) and `scrapePool`.
//!
//! A scraper also answers `/-/member`, which its peers poll to know
//! whether it is in the ring (see `pharos_scrape::membership`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use pharos_model::Labels;
use pharos_scrape::target::fmt_duration;
use pharos_scrape::{Scraper, Target, TargetHealth};
use serde_json::{Value, json};

/// Where the targets come from.
#[derive(Clone)]
pub enum TargetsSource {
    /// This process's scraper, with its id.
    Local { scraper: Arc<Scraper>, id: String },
    /// The base URLs (`http://host:port`) of every scraper.
    Remote { scrapers: Vec<String>, client: reqwest::Client },
}

impl TargetsSource {
    pub fn local(scraper: Arc<Scraper>, id: &str) -> Self {
        TargetsSource::Local { scraper, id: id.to_string() }
    }

    pub fn remote(scrapers: Vec<String>) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        TargetsSource::Remote { scrapers, client }
    }
}

pub(crate) async fn handler(
    State(source): State<TargetsSource>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let state = params.get("state").map(|s| s.to_ascii_lowercase()).unwrap_or_else(|| "any".into());
    let pool = params.get("scrapePool").filter(|p| !p.is_empty());
    let (mut active, mut dropped, warnings) = match &source {
        TargetsSource::Local { scraper, id } => {
            let active = scraper.target_health().iter().map(|(t, h)| active_json(t, h, id)).collect();
            let dropped = scraper
                .dropped_targets()
                .iter()
                .map(|d| json!({"discoveredLabels": labels_json(&d.discovered_labels), "scrapePool": d.job}))
                .collect();
            (active, dropped, Vec::new())
        }
        TargetsSource::Remote { scrapers, client } => fetch_all(client, scrapers).await,
    };
    if let Some(pool) = pool {
        active.retain(|t| t["scrapePool"] == pool.as_str());
        dropped.retain(|t| t["scrapePool"] == pool.as_str());
    }
    let mut data = serde_json::Map::new();
    if state == "active" || state == "any" {
        data.insert("activeTargets".into(), Value::Array(active));
    }
    if state == "dropped" || state == "any" {
        data.insert("droppedTargets".into(), Value::Array(dropped));
    }
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// 200 while this scraper is a ring member, 503 once it is leaving (and
/// on the gateway, which is none).
pub(crate) async fn member(State(source): State<TargetsSource>) -> Response {
    use axum::http::StatusCode;
    match &source {
        TargetsSource::Local { scraper, .. } if !scraper.is_leaving() => (StatusCode::OK, "member\n").into_response(),
        TargetsSource::Local { .. } => (StatusCode::SERVICE_UNAVAILABLE, "leaving\n").into_response(),
        TargetsSource::Remote { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not a scraper\n").into_response(),
    }
}

/// Asks every scraper concurrently and concatenates; dropped targets once.
async fn fetch_all(client: &reqwest::Client, scrapers: &[String]) -> (Vec<Value>, Vec<Value>, Vec<String>) {
    let calls = scrapers.iter().map(|base| async move {
        let r = client.get(format!("{base}/api/v1/targets")).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP status {}", r.status()));
        }
        r.json::<Value>().await.map_err(|e| e.to_string())
    });
    let (mut active, mut dropped, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for (base, r) in scrapers.iter().zip(futures::future::join_all(calls).await) {
        match r {
            Ok(mut v) => {
                if let Value::Array(a) = v["data"]["activeTargets"].take() {
                    active.extend(a);
                }
                if let Value::Array(d) = v["data"]["droppedTargets"].take() {
                    dropped.extend(d.into_iter().filter(|t| seen.insert(t.to_string())));
                }
            }
            Err(e) => warnings.push(format!("scraper {base}: {e}")),
        }
    }
    (active, dropped, warnings)
}

fn labels_json(labels: &Labels) -> BTreeMap<String, String> {
    labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

/// One entry of `activeTargets`.
pub fn active_json(t: &Target, h: &TargetHealth, scraper: &str) -> Value {
    let health = match (h.last_scrape_ms, h.last_error.is_empty()) {
        (None, _) => "unknown",
        (Some(_), true) => "up",
        (Some(_), false) => "down",
    };
    json!({
        "discoveredLabels": labels_json(&t.discovered_labels),
        "labels": labels_json(&t.labels),
        "scrapePool": t.job.job_name,
        "scrapeUrl": t.url,
        "globalUrl": global_url(&t.url),
        "lastError": h.last_error,
        "lastScrape": h.last_scrape_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
        "lastScrapeDuration": h.last_duration_s,
        "health": health,
        "scrapeInterval": fmt_duration(t.interval_ms),
        "scrapeTimeout": fmt_duration(t.timeout_ms),
        "scraper": scraper,
    })
}

/// The URL with a loopback host replaced by this machine's name, as
/// Prometheus's `globalURL`.
fn global_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find('/').unwrap_or(rest.len());
    let (hostport, path) = rest.split_at(end);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (hostport, None),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return url.to_string();
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default();
    if name.is_empty() {
        return url.to_string();
    }
    match port {
        Some(p) => format!("{scheme}://{name}:{p}{path}"),
        None => format!("{scheme}://{name}{path}"),
    }
}

/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = pharos_model::civil_from_days(days);
    let (h, min, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_798_329_599_999), "2026-12-26T23:59:59.999Z");
    }

    #[test]
    fn global_urls_name_the_host() {
        assert_eq!(global_url("http://10.0.0.1:9100/metrics"), "http://10.0.0.1:9100/metrics");
        let g = global_url("http://127.0.0.1:9100/metrics?x=1");
        assert!(g.starts_with("http://") && g.ends_with(":9100/metrics?x=1"), "{g}");
    }
}
