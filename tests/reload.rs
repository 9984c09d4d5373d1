//! Configuration reload through the real binary (`pharos up --config`), by
//! `POST /-/reload` and SIGHUP: unchanged targets keep running without a
//! restart or gap, removed ones stop with staleness markers, new ones
//! start; a bad file is rejected with an error naming the field and the old
//! configuration keeps running, as `pharos_config_last_reload_successful`
//! shows.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Serves `reload_demo{n="i"} 1` on a fresh loopback port; returns the address.
fn serve(i: usize) -> String {
    serve_metrics(format!("# TYPE reload_demo gauge\nreload_demo{{n=\"{i}\"}} 1\n"))
}

fn write_config(path: &Path, targets: &[&str]) {
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        path,
        format!("scrape_configs:\n  - job_name: demo\n    scrape_interval: 1s\n    static_configs: [{{targets: [{list}]}}]\n"),
    )
    .unwrap();
}

/// The instances whose `up` is 1 now, sorted.
fn up_instances(base: &str) -> Vec<String> {
    let (_, v) = query(base, r#"up{job="demo"} == 1"#, None);
    let mut out: Vec<String> =
        result(&v).iter().map(|s| s["metric"]["instance"].as_str().unwrap().to_string()).collect();
    out.sort();
    out
}

fn wait_instances(base: &str, want: &[&str], p: &Proc) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    while up_instances(base) != want {
        assert!(Instant::now() < deadline, "up: {:?}, want {want:?}\n{}", up_instances(base), p.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn post_reload(base: &str) -> (u16, String) {
    let r = client().post(format!("{base}/-/reload")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn reload_gauge(base: &str) -> String {
    let m = client().get(format!("{base}/metrics")).send().unwrap().text().unwrap();
    m.lines().find(|l| l.starts_with("pharos_config_last_reload_successful ")).unwrap_or_default().to_string()
}

/// The (ms, value) samples of one series over the last `secs` seconds.
fn samples(base: &str, q: &str, secs: i64) -> Vec<(i64, String)> {
    let (_, v) = query(base, &format!("{q}[{secs}s]"), None);
    let s = result(&v).first().cloned().unwrap_or_default();
    s["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn reload_applies_the_difference_and_rejects_a_bad_file() {
    let (a, b, c) = (serve(0), serve(1), serve(2));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    write_config(&config, &[&a, &b]);
    let (mut p, base) = up_with_config(dir.path(), &config);
    wait_instances(&base, &[&a, &b], &p);
    assert_eq!(reload_gauge(&base), "pharos_config_last_reload_successful 1");
    // Past the first scrapes, which report their series as added.
    std::thread::sleep(Duration::from_secs(2));
    let t0 = now_ms();

    // b out, c in, a unchanged.
    write_config(&config, &[&a, &c]);
    assert_eq!(post_reload(&base), (200, String::new()));
    wait_instances(&base, &[&a, &c], &p);
    std::thread::sleep(Duration::from_secs(2));
    let window = (now_ms() - t0) / 1000 + 1;
    // a's loop kept running: one sample a second throughout, and it never
    // saw its series as new again (a restarted loop reports them added).
    let ups = samples(&base, &format!(r#"up{{instance="{a}"}}"#), window);
    assert!(ups.len() as i64 >= window - 2, "{ups:?}");
    assert!(ups.windows(2).all(|w| w[1].0 - w[0].0 == 1000), "gap in a's samples: {ups:?}");
    let added = samples(&base, &format!(r#"scrape_series_added{{instance="{a}"}}"#), window);
    assert!(added.iter().all(|(_, v)| v == "0"), "a was restarted: {added:?}");
    // b got staleness markers: its series end.
    let (_, v) = query(&base, &format!(r#"reload_demo{{instance="{b}"}}"#), None);
    assert!(result(&v).is_empty(), "b is not stale: {v}");

    // A bad file: rejected with the field named, the old configuration keeps running.
    std::fs::write(&config, "scrape_configs:\n  - job_name: demo\n    scrape_intervall: 1s\n").unwrap();
    let (status, body) = post_reload(&base);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("scrape_intervall") && body.contains("line 3"), "{body}");
    assert_eq!(reload_gauge(&base), "pharos_config_last_reload_successful 0");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(up_instances(&base), {
        let mut v = vec![a.clone(), c.clone()];
        v.sort();
        v
    });

    // SIGHUP with a good file: c stops, the gauge is 1 again.
    write_config(&config, &[&a]);
    signal(p.child.id(), Signal::SIGHUP);
    wait_instances(&base, &[&a], &p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reload_gauge(&base) != "pharos_config_last_reload_successful 1" {
        assert!(Instant::now() < deadline, "{}", reload_gauge(&base));
        std::thread::sleep(Duration::from_millis(100));
    }
    p.terminate();
}
