//! `pharos bench verify`: reads back every sample `write` had acknowledged.
//!
//! The run is cut into queries of at most `max_samples` expected samples: a
//! group of instances (`instance=~"host-(3|4):9100"`) over a window of
//! intervals, asked as the instant query `{job="J",instance=~"..."}[Wms]` at
//! the window's last timestamp, which returns the raw samples of the window
//! on Prometheus, VictoriaMetrics and Pharos alike. Each answer is checked
//! against the acknowledged rectangles: a missing (series, timestamp) is
//! *missing*; a present one with another value, name or generation is
//! *wrong*. Samples nobody acknowledged (from failed requests) are ignored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::Error;
use crate::acklog::{self, Ack, Header};
use crate::http;
use crate::model;
use crate::stats::si;

/// One read-back query: instances `i0..i1` x intervals `k0..k1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub i0: u64,
    pub i1: u64,
    pub k0: u64,
    pub k1: u64,
}

/// Cuts the run into windows of at most about `max_samples` samples, with at
/// most `max_per_series` samples of one series in one answer.
pub fn plan(h: &Header, max_samples: u64, max_per_series: u64) -> Vec<Window> {
    let per_instance = h.series_per_instance.min(h.series).max(1);
    let k_len = (max_samples / per_instance).clamp(1, max_per_series.max(1)).min(h.intervals.max(1));
    let i_len = (max_samples / (per_instance * k_len)).max(1);
    let mut out = Vec::new();
    for k0 in (0..h.intervals).step_by(k_len as usize) {
        for i0 in (0..h.instances()).step_by(i_len as usize) {
            out.push(Window { i0, i1: (i0 + i_len).min(h.instances()), k0, k1: (k0 + k_len).min(h.intervals) });
        }
    }
    out
}

/// The PromQL selector and evaluation time (ms) of a window.
pub fn selector(h: &Header, w: &Window) -> (String, i64) {
    let instances = (w.i0..w.i1).map(|i| i.to_string()).collect::<Vec<_>>().join("|");
    let range_ms = (w.k1 - w.k0) as i64 * h.interval_ms;
    let q = format!(r#"{{job="{}",instance=~"host-({instances}):9100"}}[{range_ms}ms]"#, h.job);
    (q, h.timestamp(w.k1 - 1))
}

/// What was read back for one series slot at one timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub name: String,
    pub generation: u64,
    pub value: f64,
}

/// The samples of a query answer (`data.result` of a matrix), by (slot, ts).
pub fn parse_answer(v: &serde_json::Value) -> Result<HashMap<(u64, i64), Seen>, String> {
    if v["status"] != "success" {
        return Err(format!("query failed: {v}"));
    }
    let mut out = HashMap::new();
    let Some(result) = v["data"]["result"].as_array() else {
        return Err("answer without data.result".into());
    };
    for series in result {
        let m = &series["metric"];
        let num = |l: &str| m[l].as_str().and_then(|s| s.parse::<u64>().ok());
        let (Some(slot), Some(generation)) = (num("series_id"), num("cycle_id")) else {
            continue;
        };
        let name = m["__name__"].as_str().unwrap_or_default().to_string();
        for p in series["values"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(t), Some(val)) = (p[0].as_f64(), p[1].as_str().and_then(|s| s.parse::<f64>().ok())) else {
                return Err(format!("bad sample {p}"));
            };
            let ts = (t * 1000.0).round() as i64;
            out.insert((slot, ts), Seen { name: name.clone(), generation, value: val });
        }
    }
    Ok(out)
}

/// Missing and wrong samples of one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Check {
    pub expected: u64,
    pub missing: u64,
    pub wrong: u64,
    /// A few examples for the report.
    pub examples: Vec<String>,
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// Compares what was read for window `w` with the acknowledged samples
/// (`acks` sorted by `k0`; `max_span` is the largest `k1 - k0` among them).
pub fn check(h: &Header, acks: &[Ack], max_span: u64, w: &Window, seen: &HashMap<(u64, i64), Seen>) -> Check {
    let mut c = Check::default();
    let (s_lo, s_hi) = (w.i0 * h.series_per_instance, (w.i1 * h.series_per_instance).min(h.series));
    let first = acks.partition_point(|a| a.k0 + max_span <= w.k0);
    for a in acks[first..].iter().take_while(|a| a.k0 < w.k1) {
        let (k_lo, k_hi) = (a.k0.max(w.k0), a.k1.min(w.k1));
        let (lo, hi) = (a.lo.max(s_lo), a.hi.min(s_hi));
        for slot in lo..hi {
            for k in k_lo..k_hi {
                c.expected += 1;
                let ts = h.timestamp(k);
                let g = h.churn.generation(slot, h.series, ts);
                let want = model::value(slot, g, ts);
                let problem = match seen.get(&(slot, ts)) {
                    None => {
                        c.missing += 1;
                        "missing".to_string()
                    }
                    Some(s) if s.generation != g || s.name != model::family(slot).name || !same(s.value, want) => {
                        c.wrong += 1;
                        format!("wrong: read {} cycle {} = {}, want cycle {g} = {want}", s.name, s.generation, s.value)
                    }
                    Some(_) => continue,
                };
                if c.examples.len() < 3 {
                    c.examples.push(format!("series_id {slot} at {ts} ms: {problem}"));
                }
            }
        }
    }
    c
}

/// A validated `verify` invocation.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub url: String,
    pub ack_log: PathBuf,
    pub max_samples: u64,
    pub concurrency: usize,
    pub headers: Vec<String>,
    pub timeout: Duration,
    pub summary_json: Option<PathBuf>,
}

/// The outcome, also written as JSON with `--summary-json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub acknowledged: u64,
    pub checked: u64,
    pub missing: u64,
    pub wrong: u64,
    pub queries: u64,
    pub query_errors: u64,
    pub examples: Vec<String>,
}

/// Reads back the run; fails if any sample is missing or wrong or a query failed.
pub async fn run(cfg: VerifyConfig) -> Result<VerifyReport, Error> {
    let file = std::fs::File::open(&cfg.ack_log)
        .map_err(|e| Error::Invalid(format!("--ack-log {}: {e}", cfg.ack_log.display())))?;
    let (header, mut acks) = tokio::task::spawn_blocking(move || acklog::read(std::io::BufReader::new(file)))
        .await
        .map_err(|e| Error::Failed(format!("reading the ack log: {e}")))??;
    acks.sort_unstable();
    let max_span = acks.iter().map(|a| a.k1 - a.k0).max().unwrap_or(1);
    let (header, acks) = (Arc::new(header), Arc::new(acks));
    let mut report = VerifyReport { acknowledged: acks.iter().map(Ack::samples).sum(), ..Default::default() };
    let windows: Vec<Window> = plan(&header, cfg.max_samples.max(1), 10_000)
        .into_iter()
        .filter(|w| check(&header, &acks, max_span, w, &HashMap::new()).expected > 0)
        .collect();
    let client = http::client(cfg.timeout, http::parse_headers(&cfg.headers)?)?;
    let base = http::trim_base(&cfg.url);
    eprintln!(
        "verify: {} acknowledged samples of {} series, {} queries -> {base}",
        report.acknowledged,
        header.series,
        windows.len()
    );
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut results = futures::stream::iter(windows.into_iter().map(|w| {
        let (client, base, header, acks) = (client.clone(), base.clone(), header.clone(), acks.clone());
        async move {
            let (q, at) = selector(&header, &w);
            let time = format!("{:.3}", at as f64 / 1000.0);
            let res = client.post(format!("{base}/api/v1/query")).form(&[("query", q), ("time", time)]).send().await;
            let body: serde_json::Value = match res {
                Ok(r) => r.json().await.map_err(|e| e.to_string())?,
                Err(e) => return Err(e.to_string()),
            };
            let seen = parse_answer(&body)?;
            tokio::task::spawn_blocking(move || check(&header, &acks, max_span, &w, &seen))
                .await
                .map_err(|e| e.to_string())
        }
    }))
    .buffer_unordered(cfg.concurrency.max(1));
    while let Some(r) = results.next().await {
        report.queries += 1;
        match r {
            Ok(c) => {
                report.checked += c.expected;
                report.missing += c.missing;
                report.wrong += c.wrong;
                for e in c.examples {
                    if report.examples.len() < 10 {
                        report.examples.push(e);
                    }
                }
            }
            Err(e) => {
                report.query_errors += 1;
                if report.examples.len() < 10 {
                    report.examples.push(format!("query error: {}", e.chars().take(300).collect::<String>()));
                }
            }
        }
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            eprintln!(
                "verify: {:>5.0} s  checked {} of {}  missing {}  wrong {}",
                t0.elapsed().as_secs_f64(),
                si(report.checked as f64),
                si(report.acknowledged as f64),
                report.missing,
                report.wrong
            );
        }
    }
    eprintln!(
        "verify: done in {:.1} s: {} of {} acknowledged samples checked, {} missing, {} wrong, {} failed queries",
        t0.elapsed().as_secs_f64(),
        report.checked,
        report.acknowledged,
        report.missing,
        report.wrong,
        report.query_errors
    );
    for e in &report.examples {
        eprintln!("verify:   {e}");
    }
    if let Some(p) = &cfg.summary_json {
        crate::write_json(p, &report)?;
    }
    if report.missing > 0 || report.wrong > 0 || report.query_errors > 0 {
        return Err(Error::Failed(format!(
            "verify: {} missing, {} wrong, {} failed queries",
            report.missing, report.wrong, report.query_errors
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Churn;

    fn header() -> Header {
        Header {
            job: "b".into(),
            series: 10,
            series_per_instance: 4,
            start_ms: 1_800_000_000_000,
            interval_ms: 1000,
            intervals: 7,
            churn: Churn { per_minute: 60, start_ms: 1_800_000_000_000 },
        }
    }

    #[test]
    fn windows_cover_every_instance_and_interval_once() {
        let h = header();
        for budget in [1, 5, 12, 20, 1000] {
            let ws = plan(&h, budget, 3);
            let mut seen = std::collections::HashSet::new();
            for w in &ws {
                assert!(w.k1 - w.k0 <= 3);
                for i in w.i0..w.i1 {
                    for k in w.k0..w.k1 {
                        assert!(seen.insert((i, k)), "({i},{k}) twice at budget {budget}");
                    }
                }
            }
            assert_eq!(seen.len(), 3 * 7, "budget {budget}");
        }
        assert_eq!(plan(&h, 1000, 3).len(), 3);
        let (q, at) = selector(&h, &Window { i0: 1, i1: 3, k0: 2, k1: 5 });
        assert_eq!(q, r#"{job="b",instance=~"host-(1|2):9100"}[3000ms]"#);
        assert_eq!(at, 1_800_000_004_000);
    }

    fn answer(h: &Header, skip: (u64, u64), corrupt: (u64, u64)) -> serde_json::Value {
        let mut result = Vec::new();
        for slot in 0..h.series {
            let mut by_gen: std::collections::BTreeMap<u64, Vec<serde_json::Value>> = Default::default();
            for k in 0..h.intervals {
                if (slot, k) == skip {
                    continue;
                }
                let ts = h.timestamp(k);
                let g = h.churn.generation(slot, h.series, ts);
                let mut v = model::value(slot, g, ts);
                if (slot, k) == corrupt {
                    v += 1.0;
                }
                by_gen.entry(g).or_default().push(serde_json::json!([ts as f64 / 1000.0, v.to_string()]));
            }
            for (g, values) in by_gen {
                result.push(serde_json::json!({
                    "metric": {"__name__": model::family(slot).name, "series_id": slot.to_string(), "cycle_id": g.to_string()},
                    "values": values,
                }));
            }
        }
        serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
    }

    #[test]
    fn finds_missing_and_wrong_samples_only_where_acknowledged() {
        let h = header();
        // Acknowledged: every series at intervals 0..4, series 0..5 at 4..7.
        let mut acks = vec![Ack { k0: 0, k1: 4, lo: 0, hi: 10 }, Ack { k0: 4, k1: 7, lo: 0, hi: 5 }];
        acks.sort_unstable();
        let all = Window { i0: 0, i1: h.instances(), k0: 0, k1: h.intervals };
        let seen = parse_answer(&answer(&h, (99, 0), (99, 0))).unwrap();
        assert_eq!(check(&h, &acks, 4, &all, &seen), Check { expected: 55, ..Default::default() });

        let seen = parse_answer(&answer(&h, (3, 5), (7, 1))).unwrap();
        let c = check(&h, &acks, 4, &all, &seen);
        assert_eq!((c.expected, c.missing, c.wrong), (55, 1, 1));
        assert!(
            c.examples.iter().any(|e| e.starts_with("series_id 3 at 1800000005000 ms: missing")),
            "{:?}",
            c.examples
        );

        // Series 8 at interval 5 was never acknowledged: its absence is fine.
        let seen = parse_answer(&answer(&h, (8, 5), (99, 0))).unwrap();
        assert_eq!(check(&h, &acks, 4, &all, &seen).missing, 0);

        // A window sees only its own part.
        let w = Window { i0: 1, i1: 2, k0: 5, k1: 7 };
        assert_eq!(check(&h, &acks, 4, &w, &seen).expected, 2, "slot 4 at intervals 5 and 6");
    }

    #[test]
    fn churned_series_read_under_the_old_generation_are_wrong() {
        let h = header();
        let acks = vec![Ack { k0: 0, k1: 7, lo: 0, hi: 10 }];
        let mut seen = parse_answer(&answer(&h, (99, 0), (99, 0))).unwrap();
        let ts = h.timestamp(6);
        let s = seen.get_mut(&(0, ts)).unwrap();
        assert_eq!(s.generation, 1, "slot 0 is replaced once within 6 s");
        s.generation = 0;
        let all = Window { i0: 0, i1: 3, k0: 0, k1: 7 };
        assert_eq!(check(&h, &acks, 7, &all, &seen).wrong, 1);
        assert!(parse_answer(&serde_json::json!({"status": "error"})).is_err());
    }
}
