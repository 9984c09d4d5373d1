//! Scrapers sharing targets on a consistent hash ring, as real processes:
//! `pharos cluster up --scrapers 3` over 30 synthetic targets served by this
//! test on loopback ports.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Serves `synthetic{n="i"} i` on a fresh loopback port per target.
fn serve_targets(n: usize) -> Vec<String> {
    (0..n).map(|i| serve_metrics(format!("# TYPE synthetic gauge\nsynthetic{{n=\"{i}\"}} {i}\n"))).collect()
}

fn write_config(dir: &Path, targets: &[String]) -> std::path::PathBuf {
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let path = dir.join("prometheus.yml");
    std::fs::write(
        &path,
        format!("scrape_configs:\n  - job_name: synthetic\n    scrape_interval: 1s\n    static_configs: [{{targets: [{list}]}}]\n"),
    )
    .unwrap();
    path
}

fn start_cluster(dir: &Path, config: &Path, scrapers: u32, addr: &str) -> (Proc, serde_json::Value) {
    let config = config.display().to_string();
    let args =
        ["--config", &config, "--replication-factor", "1", "--scrapers", &scrapers.to_string(), "--listen", addr];
    cluster::cluster_up(dir, &args.map(String::from))
}

/// Owner (the `scraper` field) of each active target, by scrape URL.
fn owners(targets: &serde_json::Value) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    // An answer without targets (a process still starting) owns nothing.
    for t in targets["data"]["activeTargets"].as_array().into_iter().flatten() {
        out.entry(t["scrapeUrl"].as_str().unwrap().to_string())
            .or_default()
            .push(t["scraper"].as_str().unwrap().to_string());
    }
    out
}

#[test]
fn every_target_is_owned_by_exactly_one_scraper_and_the_gateway_merges_the_targets_pages() {
    let dir = tempfile::tempdir().unwrap();
    let targets = serve_targets(30);
    let config = write_config(dir.path(), &targets);
    let addr = free_addr();
    let base = format!("http://{addr}");
    let (mut sup, cj) = start_cluster(dir.path(), &config, 3, &addr);
    let scrapers: Vec<String> = cj["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "scraper")
        .map(|p| p["http"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(scrapers.len(), 3);

    // Every target once, spread over the three, and scraped.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let (status, v) = get_json(&format!("{base}/api/v1/targets"));
        assert_eq!(status, 200, "{v}");
        let healthy = v["data"]["activeTargets"].as_array().unwrap().iter().all(|t| t["health"] == "up");
        // Scrapers that started before their peers answered own extra
        // targets until their next check: wait for the ring to settle.
        if owners(&v).len() == 30 && owners(&v).values().all(|o| o.len() == 1) && healthy {
            break v;
        }
        assert!(Instant::now() < deadline, "targets not all up: {v}\n{}", sup.log());
        std::thread::sleep(Duration::from_millis(300));
    };
    let own = owners(&page);
    for i in 0..3 {
        let n = own.values().filter(|o| o[0] == format!("scraper-{i}")).count();
        assert!(n >= 3, "scraper-{i} owns only {n} of 30");
    }
    let t = &page["data"]["activeTargets"][0];
    for field in [
        "discoveredLabels",
        "labels",
        "scrapePool",
        "scrapeUrl",
        "globalUrl",
        "lastError",
        "lastScrape",
        "lastScrapeDuration",
        "health",
        "scrapeInterval",
        "scrapeTimeout",
        "scraper",
    ] {
        assert!(!t[field].is_null(), "{field} missing: {t}");
    }
    assert_eq!((t["scrapePool"].as_str(), t["scrapeInterval"].as_str()), (Some("synthetic"), Some("1s")));
    assert_eq!(t["labels"]["job"], "synthetic");
    assert!(t["lastScrape"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["data"]["droppedTargets"], serde_json::json!([]));

    // Each scraper's own page holds only its targets.
    let mut total = 0;
    for (i, s) in scrapers.iter().enumerate() {
        let (_, v) = get_json(&format!("{s}/api/v1/targets?state=active"));
        assert!(v["data"]["droppedTargets"].is_null());
        let mine = v["data"]["activeTargets"].as_array().unwrap();
        assert!(mine.iter().all(|t| t["scraper"] == format!("scraper-{i}").as_str()));
        total += mine.len();
    }
    assert_eq!(total, 30);
    let (_, v) = get_json(&format!("{base}/api/v1/targets?scrapePool=other"));
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));

    // Every target's samples arrive, once per target.
    let (_, v) = query(&base, "count(synthetic)", None);
    assert_eq!(result(&v)[0]["value"][1], "30", "{v}");
    sup.terminate();
}

/// The samples (ms, value) of every series of a range-vector query.
fn samples_by_series(base: &str, q: &str, at_ms: i64) -> HashMap<String, Vec<(i64, String)>> {
    let (status, v) = query(base, q, Some(at_ms as f64 / 1000.0));
    assert_eq!(status, 200, "{v}");
    result(&v)
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string()))
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect()
}

struct Roles {
    dir: std::path::PathBuf,
    topology: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Roles {
    fn start(&self, role: &str, id: &str) -> Proc {
        let mut cmd = pharos();
        cmd.args([role, "--id", id, "--topology"]).arg(&self.topology);
        match role {
            "ingester" => {
                cmd.arg("--data-dir").arg(self.dir.join(id));
            }
            "scraper" => {
                cmd.arg("--config").arg(&self.config);
            }
            _ => {}
        }
        Proc::start(cmd, &self.dir.join(format!("{id}.log")))
    }
}

/// Scraper-1 of three stops (gracefully), then a fourth joins: only the
/// targets of the one leaving or joining move, every target stays owned
/// exactly once, and the stored samples of every series are one interval
/// apart across both transitions: no gap, no duplicate, no staleness.
#[test]
fn scrapers_hand_targets_over_without_gaps_duplicates_or_staleness_markers() {
    let dir = tempfile::tempdir().unwrap();
    let targets = serve_targets(30);
    let config = write_config(dir.path(), &targets);
    let (topo, topology) = cluster::local_topology(dir.path(), 4);
    let roles = Roles { dir: dir.path().to_path_buf(), topology, config };
    let http = cluster::http;
    let base = http(&topo.gateway);
    let mut procs = vec![
        (roles.start("ingester", "ingester-0"), http(&topo.shards[0].replicas[0])),
        (roles.start("querier", "querier-0"), http(&topo.queriers[0])),
        (roles.start("gateway", "gateway"), base.clone()),
    ];
    for i in 0..3 {
        procs.push((roles.start("scraper", &format!("scraper-{i}")), http(&topo.scrapers[i])));
    }
    for (p, url) in procs.iter_mut() {
        wait_ready(&format!("{url}/-/ready"), 60, p);
    }
    let settled = |want: &[&str], what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = get_json(&format!("{base}/api/v1/targets?state=active"));
            let own = owners(&v);
            let up = v["data"]["activeTargets"].as_array().into_iter().flatten().all(|t| t["health"] == "up");
            let ok = own.len() == 30
                && own.values().all(|o| o.len() == 1)
                && own.values().all(|o| want.contains(&o[0].as_str()))
                && want.iter().all(|w| own.values().any(|o| o[0] == *w));
            if ok && up {
                return own.into_iter().map(|(k, v)| (k, v[0].clone())).collect::<HashMap<_, _>>();
            }
            assert!(Instant::now() < deadline, "{what}: {own:?} {v}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    // Keep checking that every synthetic series has a live sample.
    let all_present = |secs: u64| {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            let (_, v) = query(&base, "count(synthetic)", None);
            assert_eq!(result(&v)[0]["value"][1], "30", "a series went missing or stale: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let three = settled(&["scraper-0", "scraper-1", "scraper-2"], "three scrapers");
    let t_start = now_ms();
    all_present(3);

    // scraper-1 leaves: only its targets move.
    procs.remove(4).0.terminate();
    let two = settled(&["scraper-0", "scraper-2"], "after scraper-1 left");
    for (url, owner) in &three {
        if owner != "scraper-1" {
            assert_eq!(&two[url], owner, "{url} moved though its owner stayed");
        }
    }
    all_present(3);

    // scraper-3 joins: only targets moving to it move.
    let mut s3 = roles.start("scraper", "scraper-3");
    wait_ready(&format!("{}/-/ready", http(&topo.scrapers[3])), 60, &mut s3);
    let joined = settled(&["scraper-0", "scraper-2", "scraper-3"], "after scraper-3 joined");
    let moved = joined.iter().filter(|(url, owner)| two[*url] != **owner).count();
    assert!(joined.iter().all(|(url, owner)| two[url] == *owner || owner == "scraper-3"));
    assert!((1..30).contains(&moved), "{moved} of 30 moved to scraper-3");
    all_present(3);

    // Every series: one sample per interval (1 s) from its first to the last.
    let t_end = now_ms();
    let window = (t_end - t_start) / 1000 + 1;
    for q in ["synthetic", "up{job=\"synthetic\"}"] {
        let by_series = samples_by_series(&base, &format!("{q}[{window}s]"), t_end);
        assert_eq!(by_series.len(), 30, "{q}");
        for (series, pts) in &by_series {
            assert!(pts.len() as i64 >= window - 3, "{series}: only {} samples in {window}s", pts.len());
            for w in pts.windows(2) {
                assert_eq!(w[1].0 - w[0].0, 1000, "{series}: samples at {} and {}", w[0].0, w[1].0);
            }
            assert!(pts.iter().all(|(_, v)| v != "NaN"), "{series}: {pts:?}");
        }
    }
    drop(s3);
}
