//! `pharos cluster up`: every role its own process, talking gRPC.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn two_shard_cluster_routes_writes_and_reads_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let args = ["--shards", "2", "--replication-factor", "1", "--queriers", "2", "--listen", &addr].map(String::from);
    let (mut sup, cj) = cluster::cluster_up(dir.path(), &args);
    assert_eq!(cj["gateway"], base.as_str());
    let procs = cj["processes"].as_array().unwrap();
    let ids: Vec<&str> = procs.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ingester-0", "ingester-1", "scraper-0", "querier-0", "querier-1", "gateway"]);
    assert!(procs.iter().all(|p| p["pid"].as_u64().unwrap() > 0));
    assert_eq!(procs[1]["shard"], 1);

    // The status endpoint names the same processes.
    let (_, st) = get_json(&format!("{base}/api/v1/status/cluster"));
    assert_eq!(st["data"]["shards"][1]["leader"], "ingester-1");
    assert_eq!(st["data"]["scrapers"][0]["id"], "scraper-0");

    // Writes spread over both shards and every series reads back.
    let t0 = (now_ms() / 3_600_000 - 2) * 3_600_000; // recent: within retention
    let ts: Vec<_> = (0..200)
        .map(|i| series("spread", &[("i", &i.to_string())], &[(t0, i as f64), (t0 + 15_000, i as f64)]))
        .collect();
    assert_eq!(remote_write(&base, encode_write(ts), None).0, 204);
    let (status, v) = query(&base, "spread", Some((t0 + 15_000) as f64 / 1000.0));
    assert_eq!(status, 200, "{v}");
    assert_eq!(result(&v).len(), 200);
    let (_, v) = get_json(&format!("{base}/api/v1/series?match[]=spread"));
    assert_eq!(v["data"].as_array().unwrap().len(), 200);
    // Annotations of an aggregation pushed down to both shards (over gRPC) reach the
    // client through the gateway, with the position in the query as sent.
    let (status, v) = query(&base, "sum(rate(spread[1m]))", Some((t0 + 15_000) as f64 / 1000.0));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["infos"],
        serde_json::json!([
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"spread\" (1:10)"
        ]),
        "{v}"
    );
    assert!(v.get("warnings").is_none(), "{v}");
    for ing in &procs[..2] {
        let m = client().get(format!("{}/metrics", ing["http"].as_str().unwrap())).send().unwrap().text().unwrap();
        let line = m.lines().find(|l| l.starts_with("pharos_tsdb_active_series ")).unwrap();
        let n: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(n >= 40.0, "{} holds only {n} series: routing is not spreading", ing["id"]);
    }
    // Bad input through the gateway.
    let (status, text) = remote_write(&base, b"nope".to_vec(), None);
    assert_eq!(status, 400, "{text}");
    let (status, v) = query(&base, "sum(", None);
    assert_eq!((status, v["errorType"].as_str()), (400, Some("bad_data")));
    assert_eq!(client().post(format!("{base}/api/v1/admin/flush")).send().unwrap().status(), 204);

    // The self-scrape reaches every process.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, v2) = query(&base, r#"up{job="pharos"}"#, None);
        if result(&v2).len() == 6 && result(&v2).iter().all(|s| s["value"][1] == "1") {
            break;
        }
        assert!(Instant::now() < deadline, "self-scrape incomplete: {v2}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // `cluster down` stops everything and removes cluster.json.
    let out = pharos().args(["cluster", "down", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while sup.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "supervisor still running after cluster down");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.path().join("cluster.json").exists());
    for p in procs {
        let pid = p["pid"].as_u64().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid), "{} still running", p["id"]);
    }
}

fn is_zombie(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn cluster_up_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = pharos()
        .args(["cluster", "up", "--dir"])
        .arg(dir.path())
        .args(["--replication-factor", "0", "--listen", &free_addr()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replication"));
    let out = pharos().args(["cluster", "down", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running cluster"));
}

/// A write whose every sample is rejected comes back as a 400 naming the
/// rejections, quickly, through a gateway in front of two replicated
/// shards: rejections cross gRPC as positions in the batch, mapped back in
/// one pass (matching them by their text took 17 s and ended in a 503).
#[test]
fn a_write_rejected_in_full_answers_400_quickly() {
    const N: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut cmd = pharos();
    cmd.args(["cluster", "up", "--dir"]).arg(dir.path()).args(["--shards", "2", "--listen", &addr]);
    let mut sup = Proc::start(cmd, &dir.path().join("supervisor.log"));
    wait_cluster_json(dir.path(), &mut sup, 120);

    let t0 = (now_ms() / 3_600_000 - 2) * 3_600_000; // recent: within retention
    let write = |t: i64, series_ids: std::ops::Range<usize>| {
        let ts = series_ids.map(|i| series("rejected_in_full", &[("i", &i.to_string())], &[(t, i as f64)])).collect();
        encode_write(ts)
    };
    // The series are created in smaller writes: creating 40,000 at once can
    // take longer than one attempt may on a busy machine.
    let start = Instant::now();
    for from in (0..N).step_by(5_000) {
        let (status, text) = remote_write(&base, write(t0, from..from + 5_000), None);
        assert_eq!(status, 204, "{text}");
    }
    eprintln!("{N} series created in writes of 5,000 in {:?}", start.elapsed());

    let body = write(t0 - 1_000, 0..N);
    let start = Instant::now();
    let (status, text) = remote_write(&base, body, None);
    let took = start.elapsed();
    eprintln!("a write of {N} series, every one rejected, answered {status} in {took:?}");
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(&format!("{N} sample(s) rejected, 0 accepted:\n")), "{text}");
    let listed =
        text.lines().find(|l| l.starts_with("out of order sample: 1 sample(s), first at ")).unwrap_or_default();
    assert!(listed.contains(r#"for series rejected_in_full{i=""#), "{text}");
    assert!(text.contains(" more series\n"), "{text}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let out = pharos().args(["cluster", "down", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sup.terminate();
}
