//! `kubernetes_sd_configs` through the real binary: `pharos up --config`
//! against a stand-in Kubernetes API server in this test (list + watch,
//! real Kubernetes JSON). Pods are discovered and scraped at their pod IP
//! and container port; a pod DELETED in the watch stream stops being a target.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../crates/scrape/tests/fake_kube/mod.rs"]
mod fake_kube;

use std::time::{Duration, Instant};

use common::*;
use fake_kube::{FakeKube, pod};
use serde_json::json;

/// Serves `k8s_demo 1` on 127.0.0.1:<free port>; returns the port.
fn serve_pod_metrics() -> u16 {
    let addr = serve_metrics("# TYPE k8s_demo gauge\nk8s_demo 1\n".into());
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The pods whose `up` is 1 now, sorted.
fn up_pods(base: &str) -> Vec<String> {
    let (status, v) = query(base, r#"up{job="k8s"} == 1"#, None);
    assert_eq!(status, 200, "{v}");
    let mut pods: Vec<String> = result(&v).iter().map(|s| s["metric"]["pod"].as_str().unwrap().to_string()).collect();
    pods.sort();
    pods
}

fn wait_pods(base: &str, want: &[&str], p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while up_pods(base) != want {
        assert!(Instant::now() < deadline, "pods up: {:?}, want {want:?}\n{}", up_pods(base), p.log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn pharos_up_discovers_kubernetes_pods_by_watch_and_drops_deleted_ones() {
    let kube = FakeKube::start();
    let app = json!({"app": "demo"});
    // Both pods at 127.0.0.1, told apart by their container ports.
    for name in ["a", "b"] {
        kube.apply("pods", pod("x", name, "127.0.0.1", serve_pod_metrics(), true, app.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    kube.kubeconfig(dir.path(), "x");
    let config = dir.path().join("prometheus.yml");
    // A relative kubeconfig_file is relative to the config file, as in Prometheus.
    std::fs::write(
        &config,
        r#"
scrape_configs:
  - job_name: k8s
    scrape_interval: 1s
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: kubeconfig.yml
        namespaces: {names: [x]}
        selectors: [{role: pod, label: app=demo}]
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"#,
    )
    .unwrap();
    let (mut p, base) = up_with_config(dir.path(), &config);

    wait_pods(&base, &["a", "b"], &p);
    let (_, v) = get_json(&format!("{base}/api/v1/targets"));
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["discoveredLabels"]["__meta_kubernetes_namespace"], "x", "{t}");
    assert_eq!(t["discoveredLabels"]["__meta_kubernetes_pod_ready"], "true", "{t}");

    kube.delete("pods", "x", "b");
    wait_pods(&base, &["a"], &p);
    let (_, v) = get_json(&format!("{base}/api/v1/targets"));
    assert_eq!(v["data"]["activeTargets"].as_array().unwrap().len(), 1, "{v}");
    let requests = kube.requests();
    assert_eq!(requests.iter().filter(|r| !r.contains("watch=true")).count(), 1, "polling? {requests:?}");
    assert!(requests.iter().all(|r| r.contains("labelSelector=app%3Ddemo")), "{requests:?}");
    p.terminate();
}

/// The scrape URLs `pharos scraper` at `base` owns now, sorted.
fn owned(base: &str) -> Vec<String> {
    let (_, v) = get_json(&format!("{base}/api/v1/targets?state=active"));
    let mut urls: Vec<String> = v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["scrapeUrl"].as_str().unwrap().to_string())
        .collect();
    urls.sort();
    urls
}

/// Two `pharos scraper`s whose members are the ready pods of their
/// StatefulSet, watched through the stand-in API server: they split the
/// targets; when scraper-1's pod turns not ready scraper-0 takes them all,
/// and when it is ready again they split them as before.
#[test]
fn scrapers_take_their_members_from_the_ready_pods_of_the_statefulset() {
    let kube = FakeKube::start();
    let sts = json!({"app.kubernetes.io/name": "pharos-scraper"});
    let scraper_pod =
        |i: usize, ready: bool| pod("mon", &format!("scraper-{i}"), "127.0.0.1", 9090, ready, sts.clone());
    kube.apply("pods", scraper_pod(0, true));
    kube.apply("pods", scraper_pod(1, true));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path(), "mon");
    let targets: Vec<String> = (0..12).map(|i| serve_metrics(format!("k8s_member_demo{{n=\"{i}\"}} 1\n"))).collect();
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("scrape_configs:\n  - job_name: demo\n    scrape_interval: 1s\n    static_configs: [{{targets: [{list}]}}]\n"),
    )
    .unwrap();
    let (topo, topology) = cluster::local_topology(dir.path(), 2);
    let mut ingester = pharos();
    ingester.args(["ingester", "--id", "ingester-0", "--topology"]).arg(&topology);
    ingester.arg("--data-dir").arg(dir.path().join("ingester-0"));
    let mut procs =
        vec![(Proc::start(ingester, &dir.path().join("ingester-0.log")), cluster::http(&topo.shards[0].replicas[0]))];
    for i in 0..2 {
        let id = format!("scraper-{i}");
        let mut cmd = pharos();
        cmd.args(["scraper", "--id", &id, "--topology"]).arg(&topology).arg("--config").arg(&config);
        cmd.args(["--members-selector", "app.kubernetes.io/name=pharos-scraper", "--members-namespace", "mon"]);
        cmd.arg("--members-kubeconfig").arg(&kubeconfig);
        procs.push((Proc::start(cmd, &dir.path().join(format!("{id}.log"))), cluster::http(&topo.scrapers[i])));
    }
    for (p, url) in procs.iter_mut() {
        wait_ready(&format!("{url}/-/ready"), 60, p);
    }
    let (s0, s1) = (procs[1].1.clone(), procs[2].1.clone());
    let mut all = targets.iter().map(|t| format!("http://{t}/metrics")).collect::<Vec<_>>();
    all.sort();
    let split = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (a, b) = (owned(&s0), owned(&s1));
            let mut union: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
            union.sort();
            if union == all && !a.is_empty() && !b.is_empty() {
                return (a, b);
            }
            assert!(Instant::now() < deadline, "{what}: {a:?} {b:?}\n{}", procs[2].0.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (a, b) = split("two ready scraper pods");

    // scraper-1's pod is not ready: scraper-0 owns every target.
    kube.apply("pods", scraper_pod(1, false));
    let deadline = Instant::now() + Duration::from_secs(30);
    while owned(&s0) != all {
        assert!(Instant::now() < deadline, "scraper-0 owns {:?}\n{}", owned(&s0), procs[1].0.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ready again: the same split as before (the ring is a function of the members).
    kube.apply("pods", scraper_pod(1, true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while owned(&s0) != a {
        assert!(Instant::now() < deadline, "scraper-0 owns {:?}, want {a:?}", owned(&s0));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(owned(&s1), b);
    let watches = kube.requests().iter().filter(|r| r.contains("watch=true")).count();
    assert!(watches >= 2, "{:?}", kube.requests());
}
