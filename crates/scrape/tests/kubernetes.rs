//! Kubernetes service discovery and scraper membership against a stand-in
//! API server (list + watch over HTTP, real Kubernetes JSON): pods are
//! discovered through the watch, scraped at their pod IPs (127.0.0.x), and
//! a pod DELETED in the watch stream stops being a target, with staleness
//! markers, without the scraper listing again (watching, not polling).
#![allow(clippy::unwrap_used)]

mod common;
mod fake_kube;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_kube::{FakeKube, pod};
use pharos_cluster::{Cluster, LocalShard};
use pharos_model::{Matcher, is_stale_nan};
use pharos_scrape::kubernetes::client::ApiAccess;
use pharos_scrape::kubernetes::members::{MemberPods, watch_members};
use pharos_scrape::{Config, Scraper};
use pharos_storage::{MemStorage, Storage};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Serves `k8s_demo{} 1` on `ip`:<free port>; returns the port.
async fn serve_metrics(ip: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                if common::read_head(&mut conn).await.is_none() {
                    return;
                }
                let body = "# TYPE k8s_demo gauge\nk8s_demo 1\n";
                let resp = common::exporter::response(common::exporter::TEXT_FORMAT, body);
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// The last value of `name` for pod `pod`.
fn last(storage: &MemStorage, name: &str, pod: &str) -> Option<f64> {
    let m = [Matcher::equal("__name__", name), Matcher::equal("job", "k8s"), Matcher::equal("pod", pod)];
    let series = storage.select("default", &m, 0, i64::MAX).unwrap();
    series.first()?.samples.last().map(|s| s.v)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_discovered_by_watch_scraped_and_removed_when_deleted() {
    let kube = FakeKube::start();
    let (port_a, port_b) = (serve_metrics("127.0.0.2").await, serve_metrics("127.0.0.3").await);
    let app = json!({"app": "demo"});
    kube.apply("pods", pod("x", "a", "127.0.0.2", port_a, true, app.clone()));
    kube.apply("pods", pod("x", "b", "127.0.0.3", port_b, true, app.clone()));
    // Another namespace: not discovered.
    kube.apply("pods", pod("other", "c", "127.0.0.4", port_a, true, app.clone()));
    let dir = tempfile::tempdir().unwrap();
    let relabel = "      - {source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}\n      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n";
    let sd = "role: pod, namespaces: {own_namespace: true}";
    let (scraper, storage) = scrape_k8s(&kube.kubeconfig(dir.path(), "x"), sd, relabel);

    wait_for("both pods scraped", || {
        last(&storage, "k8s_demo", "a") == Some(1.0) && last(&storage, "k8s_demo", "b") == Some(1.0)
    })
    .await;
    let mut urls: Vec<String> = scraper.targets().iter().map(|t| t.url.clone()).collect();
    urls.sort();
    assert_eq!(urls, [format!("http://127.0.0.2:{port_a}/metrics"), format!("http://127.0.0.3:{port_b}/metrics")]);
    let t = scraper.targets().into_iter().find(|t| t.labels.get("pod") == Some("a")).unwrap();
    assert_eq!(t.discovered_labels.get("__meta_kubernetes_namespace"), Some("x"));
    assert_eq!(t.discovered_labels.get("__meta_kubernetes_pod_controller_kind"), Some("StatefulSet"));
    assert_eq!(t.discovered_labels.get("__meta_kubernetes_pod_label_app"), Some("demo"));

    // A pod added later arrives through the watch.
    let port_d = serve_metrics("127.0.0.5").await;
    kube.apply("pods", pod("x", "d", "127.0.0.5", port_d, true, app.clone()));
    wait_for("the new pod scraped", || last(&storage, "k8s_demo", "d") == Some(1.0)).await;

    // DELETED in the watch stream: the target stops, with staleness markers.
    kube.delete("pods", "x", "b");
    wait_for("b's staleness markers", || last(&storage, "up", "b").is_some_and(is_stale_nan)).await;
    assert!(last(&storage, "k8s_demo", "b").is_some_and(is_stale_nan));
    assert!(scraper.targets().iter().all(|t| t.labels.get("pod") != Some("b")));
    assert_eq!(last(&storage, "up", "a"), Some(1.0), "a keeps running");

    // One list, then watches: no polling.
    let requests = kube.requests();
    let lists = requests.iter().filter(|r| !r.contains("watch=true")).count();
    assert_eq!(lists, 1, "{requests:?}");
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/namespaces/x/pods?") && r.contains("watch=true")),
        "{requests:?}"
    );
    scraper.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraper_members_are_the_ready_pods_of_the_statefulset() {
    let kube = FakeKube::start();
    let sts = json!({"app.kubernetes.io/name": "pharos-scraper"});
    kube.apply("pods", pod("mon", "scraper-0", "127.0.0.2", 9091, true, sts.clone()));
    kube.apply("pods", pod("mon", "scraper-1", "127.0.0.3", 9091, true, sts.clone()));
    kube.apply("pods", pod("mon", "scraper-2", "127.0.0.4", 9091, false, sts.clone()));
    // Ready, but not a scraper.
    kube.apply("pods", pod("mon", "web-0", "127.0.0.5", 80, true, json!({"app": "web"})));
    let dir = tempfile::tempdir().unwrap();
    let pods = MemberPods {
        access: ApiAccess { kubeconfig_file: Some(kube.kubeconfig(dir.path(), "mon")), ..ApiAccess::default() },
        namespace: None,
        selector: "app.kubernetes.io/name=pharos-scraper".into(),
    };
    let mut members = watch_members("scraper-0", pods, Duration::from_secs(20)).await;
    assert_eq!(*members.borrow_and_update(), ["scraper-0", "scraper-1"]);

    let wait_members = |want: &'static [&'static str]| {
        let mut rx = members.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|m| m == want)).await.unwrap().unwrap();
        }
    };
    kube.apply("pods", pod("mon", "scraper-2", "127.0.0.4", 9091, true, sts.clone()));
    wait_members(&["scraper-0", "scraper-1", "scraper-2"]).await;
    kube.delete("pods", "mon", "scraper-1");
    wait_members(&["scraper-0", "scraper-2"]).await;
    // A terminating pod is out at once.
    let mut terminating = pod("mon", "scraper-2", "127.0.0.4", 9091, true, sts);
    terminating["metadata"]["deletionTimestamp"] = json!("2026-11-27T00:00:00Z");
    kube.apply("pods", terminating);
    wait_members(&["scraper-0"]).await;
    let requests = kube.requests();
    assert!(requests.iter().all(|r| r.starts_with("/api/v1/namespaces/mon/pods?")), "{requests:?}");
    assert!(
        requests.iter().all(|r| r.contains("labelSelector=app.kubernetes.io%2Fname%3Dpharos-scraper")),
        "{requests:?}"
    );
}

/// A scraper into a fresh in-memory TSDB for job `k8s`, scraping every
/// second the targets of one `kubernetes_sd_configs` entry (`sd`, with the
/// kubeconfig added) through `relabel` (YAML list items).
fn scrape_k8s(kubeconfig: &std::path::Path, sd: &str, relabel: &str) -> (Scraper, Arc<MemStorage>) {
    scrape_with(&format!("kubeconfig_file: {}, {sd}", kubeconfig.display()), relabel)
}

/// As [`scrape_k8s`] with the whole entry (`sd`) given.
fn scrape_with(sd: &str, relabel: &str) -> (Scraper, Arc<MemStorage>) {
    let config = Config::parse(&format!(
        "scrape_configs:\n  - job_name: k8s\n    scrape_interval: 1s\n    kubernetes_sd_configs:\n      - {{{sd}}}\n    relabel_configs:\n{relabel}"
    ))
    .unwrap();
    let storage = Arc::new(MemStorage::new());
    let sink = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(storage.clone()))]));
    (Scraper::start(&config, &[], "s", sink), storage)
}

/// A watch the server ends is resumed from its last resource version:
/// what happened meanwhile arrives, nothing is listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_watch_resumes_from_its_resource_version() {
    let kube = FakeKube::start();
    let port_a = serve_metrics("127.0.0.2").await;
    kube.apply("pods", pod("x", "a", "127.0.0.2", port_a, true, json!({})));
    let dir = tempfile::tempdir().unwrap();
    let relabel = "      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n";
    let (scraper, storage) = scrape_k8s(&kube.kubeconfig(dir.path(), "x"), "role: pod", relabel);
    wait_for("a scraped", || last(&storage, "k8s_demo", "a") == Some(1.0)).await;

    kube.close_watches();
    let port_b = serve_metrics("127.0.0.3").await;
    kube.apply("pods", pod("x", "b", "127.0.0.3", port_b, true, json!({})));
    kube.delete("pods", "x", "a");
    wait_for("b scraped", || last(&storage, "k8s_demo", "b") == Some(1.0)).await;
    wait_for("a stale", || last(&storage, "up", "a").is_some_and(is_stale_nan)).await;
    let requests = kube.requests();
    assert_eq!(requests.iter().filter(|r| !r.contains("watch=true")).count(), 1, "{requests:?}");
    assert!(requests.iter().filter(|r| r.contains("watch=true")).count() >= 2, "{requests:?}");
    scraper.stop();
}

/// The endpoints role joins three watches (endpoints, services, pods): a
/// target gets its service's and pod's labels, and follows their changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_targets_carry_service_and_pod_labels_from_their_watches() {
    let kube = FakeKube::start();
    let port = serve_metrics("127.0.0.2").await;
    kube.apply("pods", pod("x", "a", "127.0.0.2", port, true, json!({"app": "web"})));
    let service = |team: &str| json!({"metadata": {"name": "web", "namespace": "x", "labels": {"team": team}}, "spec": {"ports": [{"name": "metrics", "port": port, "protocol": "TCP"}]}});
    kube.apply("services", service("blue"));
    kube.apply(
        "endpoints",
        json!({
            "metadata": {"name": "web", "namespace": "x"},
            "subsets": [{
                "addresses": [{"ip": "127.0.0.2", "targetRef": {"kind": "Pod", "name": "a", "namespace": "x"}}],
                "ports": [{"name": "metrics", "port": port, "protocol": "TCP"}]
            }]
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let relabel = "      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n      - {source_labels: [__meta_kubernetes_service_label_team], target_label: team}\n";
    let sd = "role: endpoints, namespaces: {names: [x]}";
    let (scraper, storage) = scrape_k8s(&kube.kubeconfig(dir.path(), "x"), sd, relabel);
    let team = |scraper: &Scraper| scraper.targets().first().and_then(|t| t.labels.get("team").map(str::to_string));
    wait_for("the endpoint scraped", || last(&storage, "k8s_demo", "a") == Some(1.0)).await;
    assert_eq!(team(&scraper).as_deref(), Some("blue"));
    let t = scraper.targets().remove(0);
    assert_eq!(t.discovered_labels.get("__meta_kubernetes_endpoint_ready"), Some("true"));
    assert_eq!(t.discovered_labels.get("__meta_kubernetes_pod_container_port_name"), Some("metrics"));
    // The service's labels change: the target follows.
    kube.apply("services", service("green"));
    wait_for("the new service label", || team(&scraper).as_deref() == Some("green")).await;
    let requests = kube.requests();
    for kind in ["endpoints", "services", "pods"] {
        let watched = format!("/api/v1/namespaces/x/{kind}?");
        assert!(requests.iter().any(|r| r.starts_with(&watched) && r.contains("watch=true")), "{kind}: {requests:?}");
    }
    scraper.stop();
}

/// `api_server` with `bearer_token_file` (instead of a kubeconfig): every
/// request to the API server carries the token, read from the file and
/// trimmed as Prometheus does (a regression: kube sent the newline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_with_a_bearer_token_file() {
    let port = serve_metrics("127.0.0.2").await;
    // With a trailing newline (read once, trimmed) and without (given to kube, which re-reads it).
    for content in ["s3cret\n", "s3cret"] {
        let kube = FakeKube::start();
        kube.apply("pods", pod("x", "a", "127.0.0.2", port, true, json!({})));
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, content).unwrap();
        let sd = format!(
            "role: pod, api_server: '{}', bearer_token_file: {}, namespaces: {{names: [x]}}",
            kube.url(),
            token.display()
        );
        let relabel = "      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}\n";
        let (scraper, storage) = scrape_with(&sd, relabel);
        wait_for("a scraped", || last(&storage, "k8s_demo", "a") == Some(1.0)).await;
        let auth = kube.authorizations();
        assert!(!auth.is_empty() && auth.iter().all(|a| a == "Bearer s3cret"), "{content:?}: {auth:?}");
        scraper.stop();
    }
}
