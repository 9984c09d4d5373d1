//! Smoke test of `pharos bench` against `pharos up`: a short remote_write
//! load with churn, its read-back (nothing acknowledged may be missing), a
//! brief query mix (no errors), and synthetic targets scraped by
//! `pharos up --config` (`up` is 1 for each). It fails on errors and lost
//! samples only, never on speed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

/// A temporary directory with `pharos up` (no scrape jobs) serving at `base`.
fn up_in_tempdir() -> (tempfile::TempDir, String, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let up = start_up(&dir.path().join("up"), &addr, &[]);
    (dir, format!("http://{addr}"), up)
}

/// Runs `pharos bench ARGS`, failing with its output unless it exits 0.
fn bench(args: &[&str]) -> Output {
    let out = pharos().arg("bench").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pharos bench {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn write_verify_and_query_against_pharos_up() {
    let (dir, base, _up) = up_in_tempdir();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();

    // 500 series at 500 samples/s for 10 s, 120 of them replaced a minute.
    let out = bench(&[
        "write",
        "--url",
        &format!("{base}/api/v1/write"),
        "--series",
        "500",
        "--rate",
        "500",
        "--duration",
        "10s",
        "--batch",
        "200",
        "--concurrency",
        "2",
        "--churn-per-minute",
        "120",
        "--progress",
        "2s",
        "--ack-log",
        &path("ack.log"),
        "--summary-json",
        &path("write.json"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write: done in"), "{stderr}");
    assert!(stderr.contains("acked"), "progress lines expected:\n{stderr}");
    let w = json_file(&dir.path().join("write.json"));
    assert_eq!(w["samples_planned"], 5000, "{w}");
    assert_eq!(w["samples_acked"], 5000, "{w}");
    assert_eq!(w["latency"]["errors"], 0, "{w}");

    bench(&["verify", "--url", &base, "--ack-log", &path("ack.log"), "--summary-json", &path("verify.json")]);
    let v = json_file(&dir.path().join("verify.json"));
    assert_eq!((v["acknowledged"].as_u64(), v["checked"].as_u64()), (Some(5000), Some(5000)), "{v}");
    assert_eq!((v["missing"].as_u64(), v["wrong"].as_u64()), (Some(0), Some(0)), "{v}");
    // Churn happened: some series exist in two generations.
    let (_, r) = query(&base, r#"count(node_load1{job="pharos_bench",cycle_id="1"})"#, None);
    assert!(!result(&r).is_empty(), "no churned series: {r}");

    let mix = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/queries.txt");
    bench(&[
        "query",
        "--url",
        &base,
        "--queries",
        mix.to_str().unwrap(),
        "--rate",
        "5",
        "--duration",
        "4s",
        "--summary-json",
        &path("query.json"),
    ]);
    let q = json_file(&dir.path().join("query.json"));
    let classes = q["classes"].as_object().unwrap();
    assert_eq!(classes.len(), 4, "{q}");
    for (class, s) in classes {
        assert!(s["requests"].as_u64().unwrap() > 0, "class {class} never ran: {q}");
        assert_eq!(s["errors"], 0, "class {class}: {q}");
    }
}

#[test]
fn verify_reports_samples_that_were_never_stored() {
    let (dir, base, _up) = up_in_tempdir();
    let ack = dir.path().join("ack.log");
    bench(&[
        "write",
        "--url",
        &format!("{base}/api/v1/write"),
        "--series",
        "20",
        "--rate",
        "20",
        "--duration",
        "2s",
        "--ack-log",
        ack.to_str().unwrap(),
    ]);
    // Claim one more (unsent) series in the ack log: verify must miss it.
    let text = std::fs::read_to_string(&ack).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[1] = lines[1].replace("\"series\":20", "\"series\":21");
    lines.push("20 21 0 1".into());
    std::fs::write(&ack, lines.join("\n") + "\n").unwrap();
    let out = pharos().args(["bench", "verify", "--url", &base, "--ack-log", ack.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify passed with a sample missing:\n{stderr}");
    assert!(stderr.contains("1 missing"), "{stderr}");
}

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let base = free_addr().rsplit(':').next().unwrap().parse::<u16>().unwrap();
        if base > u16::MAX - n {
            continue;
        }
        let ok = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[test]
fn targets_are_scraped_by_pharos_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(3);
    let yml = dir.path().join("targets.yml");
    let summary = dir.path().join("targets.json");
    let mut cmd = pharos();
    cmd.args(["bench", "targets", "--count", "3", "--series-per-target", "50", "--scrape-interval", "1s"])
        .args(["--listen-base", &format!("127.0.0.1:{port}"), "--churn-per-minute", "30", "--config-out"])
        .arg(&yml)
        .arg("--summary-json")
        .arg(&summary);
    let mut targets = Proc::start(cmd, &dir.path().join("targets.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !yml.exists() {
        assert!(Instant::now() < deadline, "no prometheus.yml written:\n{}", targets.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _up = start_up(&dir.path().join("up"), &addr, &["--config", yml.to_str().unwrap()]);

    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (status, v) = query(&base, r#"up{job="pharos_bench_targets"}"#, None);
        assert_eq!(status, 200, "{v}");
        let r = result(&v);
        if r.len() == 3 && r.iter().all(|s| s["value"][1] == "1") {
            break;
        }
        assert!(Instant::now() < deadline, "up is not 1 for the 3 targets: {v}\n{}", targets.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every target's node_load1 series (slots 3, 7, ..., 47: 12 per target) arrived.
    let (_, v) =
        query(&base, r#"count(count by (instance, series_id) (node_load1{job="pharos_bench_targets"}))"#, None);
    assert_eq!(result(&v)[0]["value"][1], "36", "{v}");

    // Any target reports the fleet's counters: all three scraped.
    let (_, st) = get_json(&format!("http://127.0.0.1:{}/-/stats", port + 2));
    assert_eq!(st["targets_scraped"], 3, "{st}");
    assert!(st["samples"].as_u64().unwrap() >= 150, "{st}");

    assert!(targets.terminate().success(), "{}", targets.log());
    let s = json_file(&summary);
    assert!(s["min_scrapes_per_target"].as_u64().unwrap() >= 1, "{s}");
    let log = targets.log();
    assert!(log.contains("targets: done in"), "{log}");
}
