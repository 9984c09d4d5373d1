//! Pharos and Prometheus 2.42 (Debian's package) scrape the same targets
//! from the same `prometheus.yml`: a real `prometheus-node-exporter` (its
//! collectors limited to ones whose values hold still, so values can be
//! compared) and synthetic targets served by this test. The series sets,
//! after relabeling and metric relabeling, must be identical, and every value
//! must agree, apart from the scrape durations each system measures itself.
//! Neither attaches the global `external_labels` to what it stores.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SYNTHETIC: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="get",code="200"} 1027
http_requests_total{method="post",code="500"} 3
# TYPE temperature_celsius gauge
temperature_celsius{room="a \"quoted\" \\ room\nwith a newline"} -12.5
temperature_celsius{room="empty"} NaN
temperature_celsius{room="hot"} +Inf
# TYPE request_seconds histogram
request_seconds_bucket{le="0.1"} 5
request_seconds_bucket{le="1"} 9
request_seconds_bucket{le="+Inf"} 10
request_seconds_sum 4.2
request_seconds_count 10
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.05
rpc_seconds{quantile="0.99"} 0.5
rpc_seconds_sum 12
rpc_seconds_count 100
# a job label of its own, which honor_labels: false renames to exported_job
jobs_running{job="batch",tmp_id="x1"} 4
synthetic_dropped_total 1
untyped_metric 1e-3
"#;

const TEXTFILE: &str = "# TYPE pharos_textfile_value gauge\npharos_textfile_value{kind=\"a\"} 1.5\n\
pharos_textfile_value{kind=\"b\"} 2.5e10\n";

fn config(node: &str, synthetic: &[String]) -> String {
    let targets = synthetic.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  external_labels:
    cluster: only-for-data-sent-elsewhere
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['{node}']
        labels:
          env: test
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+):\d+'
        target_label: host
        replacement: '${{1}}'
      - source_labels: [env]
        target_label: env_upper
        action: uppercase
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: node_scrape_collector_duration_seconds
        action: drop
  - job_name: synthetic
    params:
      format: [text]
    static_configs:
      - targets: [{targets}]
        labels:
          team: Storage
    relabel_configs:
      - source_labels: [__address__]
        regex: '.*:(\d+)'
        target_label: port
      - source_labels: [port]
        modulus: 4
        target_label: bucket
        action: hashmod
      - source_labels: [team]
        target_label: team
        action: lowercase
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: synthetic_dropped_.*
        action: drop
      - regex: tmp_.*
        action: labeldrop
      - source_labels: [method]
        regex: post
        target_label: write
        replacement: "true"
"#
    )
}

/// Every series an instant query for all names returns: labels -> value.
fn snapshot(base: &str) -> BTreeMap<BTreeMap<String, String>, String> {
    let (status, v) = query(base, r#"{__name__=~".+"}"#, None);
    assert_eq!(status, 200, "{v}");
    result(&v)
        .iter()
        .map(|s| {
            let labels =
                s["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
            (labels.collect(), s["value"][1].as_str().unwrap().to_string())
        })
        .collect()
}

/// Waits until every target of `base` has been scraped at least `n` times
/// (`up` alone would not say the later scrapes happened).
fn wait_scrapes(base: &str, n: u32, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = query(base, "count_over_time(up[1m])", None);
        let counts: Vec<f64> = v["data"]["result"]
            .as_array()
            .map(|r| r.iter().filter_map(|s| s["value"][1].as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        if counts.len() == 3 && counts.iter().all(|c| *c >= f64::from(n)) {
            return;
        }
        if let Some(s) = proc.child.try_wait().unwrap() {
            panic!("{base} exited with {s}:\n{}", proc.log());
        }
        assert!(Instant::now() < deadline, "{base}: targets not scraped {n} times: {v}\n{}", proc.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_node_exporter(dir: &Path) -> (Proc, String) {
    let textfiles = dir.join("textfile");
    std::fs::create_dir_all(&textfiles).unwrap();
    std::fs::write(textfiles.join("pharos.prom"), TEXTFILE).unwrap();
    let addr = free_addr();
    let mut cmd = Command::new("prometheus-node-exporter");
    cmd.arg(format!("--web.listen-address={addr}"))
        .args(["--collector.disable-defaults", "--collector.uname", "--collector.os", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", textfiles.display()))
        .arg("--web.disable-exporter-metrics");
    let mut p = Proc::start(cmd, &dir.join("node-exporter.log"));
    wait_ready(&format!("http://{addr}/metrics"), 30, &mut p);
    (p, addr)
}

#[test]
fn pharos_and_prometheus_scrape_the_same_series_and_values() {
    require("prometheus", "prometheus");
    require("prometheus-node-exporter", "prometheus-node-exporter");
    let dir = tempfile::tempdir().unwrap();
    let (_node, node) = start_node_exporter(dir.path());
    let synthetic = vec![serve_metrics(SYNTHETIC.to_string()), serve_metrics(SYNTHETIC.to_string())];
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(&yml, config(&node, &synthetic)).unwrap();

    let prom_addr = free_addr();
    let mut prom_cmd = Command::new("prometheus");
    prom_cmd
        .arg(format!("--config.file={}", yml.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("prometheus").display()))
        .arg(format!("--web.listen-address={prom_addr}"));
    let mut prom = Proc::start(prom_cmd, &dir.path().join("prometheus.log"));
    let pharos_addr = free_addr();
    let mut pharos_cmd = pharos();
    pharos_cmd.arg("up").arg("--data-dir").arg(dir.path().join("pharos")).arg("--listen").arg(&pharos_addr);
    pharos_cmd.arg("--config").arg(&yml);
    let mut ph = Proc::start(pharos_cmd, &dir.path().join("pharos.log"));

    let (prom_base, pharos_base) = (format!("http://{prom_addr}"), format!("http://{pharos_addr}"));
    wait_ready(&format!("{prom_base}/-/ready"), 60, &mut prom);
    wait_ready(&format!("{pharos_base}/-/ready"), 60, &mut ph);
    // Past the first scrape, so `scrape_series_added` is 0 on both.
    wait_scrapes(&prom_base, 3, &mut prom);
    wait_scrapes(&pharos_base, 3, &mut ph);

    let (mut want, mut got) = (snapshot(&prom_base), snapshot(&pharos_base));
    // Each system times its own scrapes.
    for s in [&mut want, &mut got] {
        for (labels, value) in s.iter_mut() {
            if labels["__name__"] == "scrape_duration_seconds" {
                *value = "(measured)".into();
            }
        }
    }
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "series only in Prometheus: {missing:#?}\nonly in Pharos: {extra:#?}"
    );
    let differ: Vec<_> = want.iter().filter(|(k, v)| got[*k] != **v).map(|(k, v)| (k, v, &got[k])).collect();
    assert!(differ.is_empty(), "values differ (labels, prometheus, pharos): {differ:#?}");
    // The comparison covered what it was meant to.
    let names: std::collections::BTreeSet<_> = want.keys().map(|k| k["__name__"].as_str()).collect();
    for n in
        ["node_uname_info", "node_os_info", "pharos_textfile_value", "request_seconds_bucket", "jobs_running", "up"]
    {
        assert!(names.contains(n), "{n} missing from both: {names:?}");
    }
    assert!(!names.contains("synthetic_dropped_total") && !names.contains("node_scrape_collector_duration_seconds"));
    assert!(want.len() > 40, "only {} series compared", want.len());
}
