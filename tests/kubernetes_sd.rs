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
