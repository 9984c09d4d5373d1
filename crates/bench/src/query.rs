//! `pharos bench query`: a query mix at a fixed rate against any
//! Prometheus-compatible API, with latency percentiles per class.
//!
//! The mix file has one query per line, `CLASS: QUERY` for an instant query
//! at the current time, or `CLASS: range WINDOW [STEP]: QUERY` for a range
//! query over the last WINDOW (step default: WINDOW / 60, at least 1 s).
//! Blank lines and `#` comments are skipped; lines are used round-robin, so
//! repeating a line weights it. Queries are sent open-loop (a slow answer
//! does not delay the next query) with at most `max_in_flight` outstanding;
//! queries that would exceed it are counted as `skipped (client saturated)`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Error;
use crate::http;
use crate::schedule::uniform_offsets;
use crate::stats::{Summary, Tally, si};

/// One line of the mix.
#[derive(Clone, Debug, PartialEq)]
pub struct MixQuery {
    pub class: String,
    pub expr: String,
    /// `Some((window_ms, step_ms))` for a range query.
    pub range: Option<(i64, i64)>,
}

/// Parses a mix file.
pub fn parse_mix(text: &str) -> Result<Vec<MixQuery>, Error> {
    let mut out = Vec::new();
    for (n, line) in crate::content_lines(text) {
        let bad = |why: &str| Error::Invalid(format!("query mix line {n}: {why}: {line}"));
        let (class, rest) = line.split_once(':').ok_or_else(|| bad("want 'CLASS: QUERY'"))?;
        let class = class.trim();
        if class.is_empty() || !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad("the class is a word of letters, digits, '_' or '-'"));
        }
        let rest = rest.trim();
        let (range, expr) = match rest.strip_prefix("range ") {
            Some(r) => {
                let (spec, expr) = r.split_once(':').ok_or_else(|| bad("want 'range WINDOW [STEP]: QUERY'"))?;
                let parts: Vec<&str> = spec.split_whitespace().collect();
                let dur = |s: &str| match pharos_model::parse_duration_ms(s) {
                    Ok(ms) if ms > 0 => Ok(ms),
                    _ => Err(bad(&format!("bad duration {s:?}"))),
                };
                let (window, step) = match parts[..] {
                    [w] => (dur(w)?, (dur(w)? / 60).max(1000)),
                    [w, s] => (dur(w)?, dur(s)?),
                    _ => return Err(bad("want 'range WINDOW [STEP]: QUERY'")),
                };
                (Some((window, step)), expr.trim())
            }
            None => (None, rest),
        };
        if expr.is_empty() {
            return Err(bad("empty query"));
        }
        out.push(MixQuery { class: class.to_string(), expr: expr.to_string(), range });
    }
    if out.is_empty() {
        return Err(Error::Invalid("the query mix has no queries".into()));
    }
    Ok(out)
}

/// The form parameters of `q` evaluated at `now_ms`: the API path and its fields.
pub fn request_params(q: &MixQuery, now_ms: i64) -> (&'static str, Vec<(&'static str, String)>) {
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    match q.range {
        None => ("/api/v1/query", vec![("query", q.expr.clone()), ("time", secs(now_ms))]),
        Some((window, step)) => (
            "/api/v1/query_range",
            vec![
                ("query", q.expr.clone()),
                ("start", secs(now_ms - window)),
                ("end", secs(now_ms)),
                ("step", secs(step)),
            ],
        ),
    }
}

/// A validated `query` invocation.
#[derive(Clone, Debug)]
pub struct QueryConfig {
    pub url: String,
    pub queries: PathBuf,
    pub rate: f64,
    pub duration_ms: i64,
    pub max_in_flight: usize,
    pub headers: Vec<String>,
    pub timeout: Duration,
    pub progress: Duration,
    pub summary_json: Option<PathBuf>,
}

/// Per-class results, also written as JSON with `--summary-json`.
#[derive(Debug, serde::Serialize)]
pub struct QueryReport {
    pub url: String,
    pub elapsed_s: f64,
    pub queries_per_s: f64,
    pub skipped: u64,
    pub classes: BTreeMap<String, Summary>,
    pub first_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    classes: BTreeMap<String, Tally>,
    done: u64,
    skipped: u64,
    first_error: Option<String>,
}

/// Runs the mix, prints progress and per-class percentiles; fails on any error.
pub async fn run(cfg: QueryConfig) -> Result<QueryReport, Error> {
    let text = std::fs::read_to_string(&cfg.queries)
        .map_err(|e| Error::Invalid(format!("--queries {}: {e}", cfg.queries.display())))?;
    let mix = Arc::new(parse_mix(&text)?);
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) || cfg.duration_ms <= 0 || cfg.max_in_flight == 0 {
        return Err(Error::Invalid("--rate, --duration and --max-in-flight must be positive".into()));
    }
    let client = http::client(cfg.timeout, http::parse_headers(&cfg.headers)?)?;
    let base = http::trim_base(&cfg.url);
    eprintln!(
        "query: {} queries in the mix, {}/s for {:.0} s -> {base}",
        mix.len(),
        cfg.rate,
        cfg.duration_ms as f64 / 1000.0
    );
    let shared = Arc::new(Mutex::new(Shared::default()));
    for q in mix.iter() {
        shared.lock().classes.entry(q.class.clone()).or_default();
    }
    let in_flight = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight));
    let t0 = Instant::now();
    let progress = tokio::spawn(progress_loop(shared.clone(), t0, cfg.progress));
    let mut tasks = tokio::task::JoinSet::new();
    let drive = async {
        for (i, off) in uniform_offsets(cfg.rate, cfg.duration_ms).enumerate() {
            tokio::time::sleep_until((t0 + Duration::from_millis(off as u64)).into()).await;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                shared.lock().skipped += 1;
                continue;
            };
            let q = mix[i % mix.len()].clone();
            let (client, base, shared) = (client.clone(), base.clone(), shared.clone());
            tasks.spawn(async move {
                let _permit = permit;
                one(&client, &base, &q, &shared).await;
            });
            while tasks.try_join_next().is_some() {}
        }
    };
    tokio::select! {
        () = drive => {}
        () = crate::terminated() => eprintln!("query: interrupted, waiting for queries in flight"),
    }
    while tasks.join_next().await.is_some() {}
    progress.abort();
    let elapsed = t0.elapsed().as_secs_f64();
    let s = shared.lock();
    let report = QueryReport {
        url: base.clone(),
        elapsed_s: elapsed,
        queries_per_s: s.done as f64 / elapsed.max(1e-9),
        skipped: s.skipped,
        classes: s.classes.iter().map(|(c, t)| (c.clone(), t.summary())).collect(),
        first_error: s.first_error.clone(),
    };
    drop(s);
    eprintln!(
        "query: done in {:.1} s, {:.1} queries/s, {} skipped (client saturated)",
        elapsed, report.queries_per_s, report.skipped
    );
    for (class, sum) in &report.classes {
        eprintln!(
            "query: {class:<12} {:>6} queries  {}  errors {}",
            sum.requests,
            sum.latency_line(),
            sum.errors_line()
        );
    }
    if let Some(e) = &report.first_error {
        eprintln!("query: first error: {e}");
    }
    if let Some(p) = &cfg.summary_json {
        crate::write_json(p, &report)?;
    }
    let errors: u64 = report.classes.values().map(|c| c.errors).sum();
    if errors > 0 {
        return Err(Error::Failed(format!("query: {errors} queries failed")));
    }
    Ok(report)
}

/// Sends one query and records its latency (or failure) under its class.
async fn one(client: &reqwest::Client, base: &str, q: &MixQuery, shared: &Mutex<Shared>) {
    let (path, params) = request_params(q, http::now_ms());
    let t = Instant::now();
    let res = client.post(format!("{base}{path}")).form(&params).send().await;
    let outcome = match res {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(body) => check_answer(status.as_u16(), &body),
                Err(e) => Err((http::error_kind(&e), e.to_string())),
            }
        }
        Err(e) => Err((http::error_kind(&e), e.to_string())),
    };
    let us = t.elapsed().as_micros() as u64;
    let mut s = shared.lock();
    s.done += 1;
    let tally = s.classes.entry(q.class.clone()).or_default();
    match outcome {
        Ok(()) => tally.ok(us),
        Err((kind, detail)) => {
            tally.error(kind.clone(), us);
            if s.first_error.is_none() {
                let d: String = detail.chars().take(300).collect();
                s.first_error = Some(format!("{} ({kind}): {d}", q.expr));
            }
        }
    }
}

/// A 2xx answer whose JSON `status` is `success`, or the error's kind and detail.
pub fn check_answer(status: u16, body: &[u8]) -> Result<(), (String, String)> {
    let text = || String::from_utf8_lossy(body).into_owned();
    if !(200..300).contains(&status) {
        return Err((format!("http {status}"), text()));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v["status"] == "success" => Ok(()),
        Ok(v) => Err((format!("status {}", v["errorType"].as_str().unwrap_or("unknown")), text())),
        Err(_) => Err(("bad json".into(), text())),
    }
}

async fn progress_loop(shared: Arc<Mutex<Shared>>, t0: Instant, every: Duration) {
    let mut tick = tokio::time::interval_at((t0 + every).into(), every);
    loop {
        tick.tick().await;
        let s = shared.lock();
        let errors: u64 = s.classes.values().map(Tally::error_count).sum();
        eprintln!(
            "query: {:>5.0} s  done {:>7}  errors {}  skipped {}",
            t0.elapsed().as_secs_f64(),
            si(s.done as f64),
            errors,
            s.skipped
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instant_and_range_lines_with_colons_in_the_query() {
        let mix = parse_mix(
            "# a comment\n\nlight: up\nheavy: range 1h: sum by (mode) (rate(node_cpu_seconds_total[5m]))\n\
             sub: range 30m 15s: max_over_time(job:x:rate5m[10m:1m])\n",
        )
        .unwrap();
        assert_eq!(mix.len(), 3);
        assert_eq!(mix[0], MixQuery { class: "light".into(), expr: "up".into(), range: None });
        assert_eq!(mix[1].range, Some((3_600_000, 60_000)));
        assert_eq!(mix[1].expr, "sum by (mode) (rate(node_cpu_seconds_total[5m]))");
        assert_eq!(mix[2].range, Some((1_800_000, 15_000)));
        assert_eq!(mix[2].expr, "max_over_time(job:x:rate5m[10m:1m])");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse_mix("").is_err());
        assert!(parse_mix("no class here").is_err());
        assert!(parse_mix("bad class: up").is_err());
        assert!(parse_mix("x: range 1h").is_err());
        assert!(parse_mix("x: range soon: up").is_err());
        assert!(parse_mix("x: range 1h 1m 1s: up").is_err());
        assert!(parse_mix("x:   ").is_err());
        // A short window still gets a 1 s step.
        assert_eq!(parse_mix("x: range 10s: up").unwrap()[0].range, Some((10_000, 1000)));
    }

    #[test]
    fn request_parameters() {
        let q = parse_mix("r: range 1m 10s: up").unwrap().remove(0);
        let (path, p) = request_params(&q, 1_700_000_000_500);
        assert_eq!(path, "/api/v1/query_range");
        assert_eq!(p[1], ("start", "1699999940.500".to_string()));
        assert_eq!(p[3], ("step", "10.000".to_string()));
        let q = parse_mix("i: up").unwrap().remove(0);
        assert_eq!(request_params(&q, 1000).1[1], ("time", "1.000".to_string()));
    }

    #[test]
    fn answers_are_errors_unless_2xx_and_success() {
        assert!(check_answer(200, br#"{"status":"success","data":{}}"#).is_ok());
        assert_eq!(check_answer(503, b"busy").unwrap_err().0, "http 503");
        assert_eq!(check_answer(200, br#"{"status":"error","errorType":"timeout"}"#).unwrap_err().0, "status timeout");
        assert_eq!(check_answer(200, b"<html>").unwrap_err().0, "bad json");
    }
}
