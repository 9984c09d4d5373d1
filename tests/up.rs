//! `pharos up`, the embedded mode, exercised through the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn up_scrapes_itself_and_serves_the_prometheus_api() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _p = start_up(dir.path(), &addr, &[]);

    // Within one scrape interval (15 s) `up` of the self-scrape is 1.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = query(&base, r#"up{job="pharos"}"#, None);
        assert_eq!(status, 200, "{v}");
        if let Some(s) = result(&v).first() {
            assert_eq!(s["value"][1], "1");
            assert_eq!(s["metric"]["instance"], addr.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "up{{job=\"pharos\"}} never appeared");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Pharos's own metrics are queryable too.
    let (_, v) = query(&base, r#"pharos_tsdb_active_series{job="pharos"}"#, None);
    assert_eq!(result(&v).len(), 1, "{v}");

    let (status, v) = get_json(&format!("{base}/api/v1/status/buildinfo"));
    assert_eq!((status, v["status"].as_str()), (200, Some("success")));
    let (_, v) = get_json(&format!("{base}/api/v1/status/cluster"));
    assert_eq!(v["data"]["shards"][0]["leader"], "ingester-0");
    assert_eq!(v["data"]["shards"][0]["replicas"][0]["id"], "ingester-0");
    let (_, v) = get_json(&format!("{base}/api/v1/labels"));
    assert!(v["data"].as_array().unwrap().iter().any(|l| l == "job"), "{v}");
    let (_, v) = get_json(&format!("{base}/api/v1/label/job/values"));
    assert_eq!(v["data"], serde_json::json!(["pharos"]));
    let (_, v) = get_json(&format!("{base}/api/v1/series?match[]=up"));
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    let metrics = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("pharos_tsdb_appended_samples_total"), "{metrics}");
    assert_eq!(client().get(format!("{base}/-/healthy")).send().unwrap().status(), 200);
}

#[test]
fn up_remote_write_roundtrip_bad_input_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut p = start_up(dir.path(), &addr, &[]);
    let t0 = (now_ms() / 3_600_000 - 2) * 3_600_000; // recent: within retention
    let samples: Vec<(i64, f64)> = (0..200).map(|i| (t0 + i * 15_000, i as f64)).collect();
    let body = encode_write(vec![
        series("rw_test", &[("job", "a"), ("code", "200")], &samples),
        series("rw_test", &[("job", "a"), ("code", "500")], &samples),
        series("rw_test", &[("job", "b")], &samples),
    ]);
    assert_eq!(remote_write(&base, body, None), (204, String::new()));
    let at = (t0 + 199 * 15_000) as f64 / 1000.0;

    // All four matcher types.
    for (q, n) in [
        (r#"rw_test"#, 3),
        (r#"rw_test{job="a"}"#, 2),
        (r#"rw_test{code!="200"}"#, 2),
        (r#"rw_test{code=~"2..|5.."}"#, 2),
        (r#"rw_test{code!~"5.."}"#, 2),
        (r#"{__name__=~"rw_.*", job="b"}"#, 1),
    ] {
        let (status, v) = query(&base, q, Some(at));
        assert_eq!(status, 200, "{q}: {v}");
        assert_eq!(result(&v).len(), n, "{q}: {v}");
    }
    // A range query returns every point.
    let r: serde_json::Value = client()
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", "rw_test{job=\"b\"}"),
            ("start", &(t0 / 1000).to_string()),
            ("end", &at.to_string()),
            ("step", "15s"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(result(&r)[0]["values"].as_array().unwrap().len(), 200, "{r}");

    // Tenants are isolated.
    let body = encode_write(vec![series("rw_test", &[("job", "other")], &[(t0, 1.0)])]);
    assert_eq!(remote_write(&base, body, Some("team-b")).0, 204);
    let (_, v) = query(&base, "rw_test", Some(at));
    assert_eq!(result(&v).len(), 3);

    // Bad input: clear errors, nothing accepted is lost.
    let (status, text) = remote_write(&base, b"definitely not snappy".to_vec(), None);
    assert_eq!(status, 400);
    assert!(text.contains("snappy"), "{text}");
    let garbage = snap::raw::Encoder::new().compress_vec(&[0xff, 0xff, 0xff, 0x01]).unwrap();
    let (status, text) = remote_write(&base, garbage, None);
    assert_eq!(status, 400);
    assert!(text.contains("protobuf"), "{text}");
    let late =
        encode_write(vec![series("rw_test", &[("job", "b")], &[(t0, 5.0)]), series("rw_new", &[], &[(t0, 1.0)])]);
    let (status, text) = remote_write(&base, late, None);
    assert_eq!(status, 400);
    assert!(text.contains("out of order sample") && text.contains("rw_test"), "{text}");
    let (_, v) = query(&base, "rw_new", Some((t0 / 1000 + 10) as f64));
    assert_eq!(result(&v).len(), 1, "the valid part of a partly rejected request is stored");
    let (status, v) = query(&base, "rw_test{", None);
    assert_eq!((status, v["errorType"].as_str()), (400, Some("bad_data")), "{v}");
    let (status, v) = get_json(&format!("{base}/api/v1/nope"));
    assert_eq!((status, v["status"].as_str()), (404, Some("error")), "{v}");
    let (status, v) = get_json(&format!("{base}/api/v1/series"));
    assert_eq!((status, v["error"].as_str()), (400, Some("no match[] parameter provided")));

    // kill -9, restart: every acknowledged sample is still there.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let _p = start_up(dir.path(), &addr, &[]);
    let r: serde_json::Value = client()
        .get(format!("{base}/api/v1/query_range"))
        .query(&[("query", "rw_test"), ("start", &(t0 / 1000).to_string()), ("end", &at.to_string()), ("step", "15s")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let points: usize = result(&r).iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(points, 600, "{r}");
    assert_eq!(client().post(format!("{base}/api/v1/admin/flush")).send().unwrap().status(), 204);
}

#[test]
fn up_refuses_an_occupied_port_a_foreign_data_dir_and_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = pharos().args(["up", "--listen", &addr, "--data-dir"]).arg(dir.path().join("d")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("somebody-elses.db"), "x").unwrap();
    let out = pharos().args(["up", "--listen", &free_addr(), "--data-dir"]).arg(&foreign).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not written by Pharos"), "{err}");

    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: x\n    scrape_intervl: 5s\n")
        .unwrap();
    let out = pharos().args(["up", "--listen", &free_addr(), "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("scrape_intervl") && err.contains("line 5"), "{err}");

    let out = pharos()
        .args(["up", "--listen", &free_addr(), "--config"])
        .arg(dir.path().join("missing.yml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("missing.yml"), "{err}");
}

#[test]
fn up_scrapes_a_configured_target() {
    // Pharos scraping another Pharos, configured through a prometheus.yml.
    let dir = tempfile::tempdir().unwrap();
    let target = free_addr();
    let _t = start_up(&dir.path().join("t"), &target, &[]);
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: other\n    static_configs:\n      - targets: ['{target}']\n        labels: {{env: test}}\n"),
    )
    .unwrap();
    let addr = free_addr();
    let _p = start_up(dir.path(), &addr, &["--config", cfg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = query(&format!("http://{addr}"), r#"pharos_build_info{job="other", env="test"}"#, None);
        if result(&v).len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "configured target never scraped: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn up_keeps_every_acknowledged_sample_across_kill_9_during_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut p = start_up(dir.path(), &addr, &[]);
    let t0 = (now_ms() / 3_600_000 - 1) * 3_600_000;
    // A writer acknowledges batches of 50 series x 1 sample, one second of
    // sample time apart, while the server is killed under it.
    let writer = {
        let base = base.clone();
        std::thread::spawn(move || {
            let mut acked = 0i64;
            for i in 0..3_000i64 {
                let batch: Vec<_> =
                    (0..50).map(|s| series("crash", &[("s", &s.to_string())], &[(t0 + i * 1000, i as f64)])).collect();
                let ok = client()
                    .post(format!("{base}/api/v1/write"))
                    .body(encode_write(batch))
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 204);
                if !ok {
                    break;
                }
                acked = i + 1;
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    p.child.kill().unwrap(); // SIGKILL: no flush, no clean shutdown
    p.child.wait().unwrap();
    let acked = writer.join().unwrap();
    assert!(acked > 10, "the writer acknowledged only {acked} batches before the kill");
    eprintln!("{acked} batches of 50 samples acknowledged before SIGKILL");
    let _p = start_up(dir.path(), &addr, &[]);
    let at = (t0 + acked * 1000) as f64 / 1000.0;
    let (_, v) = query(&base, "count_over_time(crash[1h])", Some(at));
    let res = result(&v);
    assert_eq!(res.len(), 50, "{v}");
    for s in res {
        let n: i64 = s["value"][1].as_str().unwrap().parse().unwrap();
        // every acknowledged sample, plus perhaps the one in flight at the kill
        assert!(n == acked || n == acked + 1, "series {} has {n} samples, {acked} were acknowledged", s["metric"]);
    }
}

/// Reads one counter (without labels) from a `/metrics` page.
fn counter(base: &str, name: &str) -> f64 {
    let page = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics:\n{page}"))
}

#[test]
fn every_acknowledged_remote_write_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _p = start_up(dir.path(), &addr, &[]);
    let t0 = (now_ms() / 3_600_000 - 1) * 3_600_000;
    let before = counter(&base, "pharos_tsdb_wal_syncs_total");
    for i in 0..100 {
        let body = encode_write(vec![series("durable_test", &[("job", "d")], &[(t0 + i * 1000, i as f64)])]);
        assert_eq!(remote_write(&base, body, None), (204, String::new()));
    }
    let syncs = counter(&base, "pharos_tsdb_wal_syncs_total") - before;
    // The self-scrape may share a sync with a write, never take one away.
    assert!(syncs >= 100.0, "{syncs} syncs of the write-ahead log for 100 acknowledged writes");
}

/// A sample far in the future is refused (one such sample would make every
/// real sample after it out of order), and the series goes on taking real
/// samples.
#[test]
fn a_sample_far_in_the_future_is_rejected_and_real_ones_still_land() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let _p = start_up(dir.path(), &addr, &[]);
    let now = now_ms();
    let write = |t: i64| encode_write(vec![series("future_test", &[("job", "f")], &[(t, 1.0)])]);
    assert_eq!(remote_write(&base, write(now - 60_000), None), (204, String::new()));
    let (status, text) = remote_write(&base, write(1 << 62), None);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("sample timestamp is too far in the future"), "{text}");
    assert!(text.contains("future_test"), "{text}");
    // Within the grace period (10 minutes) is fine, and so is now.
    assert_eq!(remote_write(&base, write(now), None), (204, String::new()));
    assert_eq!(remote_write(&base, write(now + 5 * 60_000), None), (204, String::new()));
}
