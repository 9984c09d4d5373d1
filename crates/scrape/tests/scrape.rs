//! The scraper end to end in one process: a target served over a local
//! socket, found through a file_sd file, scraped with basic auth and
//! relabeling into an in-memory TSDB; then the file changes and the target
//! goes away with staleness markers, without a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pharos_cluster::{Cluster, LocalShard};
use pharos_model::{Matcher, is_stale_nan};
use pharos_scrape::{Config, Scraper};
use pharos_storage::{MemStorage, Storage};
use tokio::io::AsyncWriteExt;

const BODY: &str = "# TYPE a gauge\na{path=\"/x\"} 1\n# TYPE go_gc gauge\ngo_gc 2\n# EOF\n";

/// Serves `BODY` as OpenMetrics to every request and records the request heads.
async fn serve(requests: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            let requests = requests.clone();
            tokio::spawn(async move {
                let Some(head) = common::read_head(&mut conn).await else { return };
                requests.lock().unwrap().push(String::from_utf8_lossy(&head).to_lowercase());
                let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                let resp = common::exporter::response(openmetrics, BODY);
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn last(storage: &MemStorage, name: &str) -> Option<(String, f64)> {
    let m = [Matcher::equal("__name__", name), Matcher::equal("job", "files")];
    let series = storage.select("default", &m, 0, i64::MAX).unwrap();
    let s = series.first()?;
    s.samples.last().map(|x| (s.labels.to_string(), x.v))
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_target_is_scraped_relabeled_and_removed_without_restart() {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let addr = serve(requests.clone()).await;
    let dir = std::env::temp_dir().join(format!("pharos-scrape-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sd = dir.join("targets.json");
    std::fs::write(&sd, format!(r#"[{{"targets": ["{addr}"], "labels": {{"__meta_team": "db"}}}}]"#)).unwrap();
    std::fs::write(dir.join("password"), "pw\n").unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        r#"
scrape_configs:
  - job_name: files
    scrape_interval: 1s
    basic_auth: {username: u, password_file: password}
    file_sd_configs: [{files: ["*.json"], refresh_interval: 1s}]
    relabel_configs:
      - {source_labels: [__meta_team], target_label: team}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
"#,
    )
    .unwrap();
    let config = Config::load(&cfg).unwrap();
    let storage = Arc::new(MemStorage::new());
    let sink = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(storage.clone()))]));
    let scraper = Scraper::start(&config, &[], "s", sink);

    wait_for("a scraped sample", || last(&storage, "a").is_some()).await;
    let (labels, v) = last(&storage, "a").unwrap();
    assert_eq!(labels, format!(r#"a{{instance="{addr}", job="files", path="/x", team="db"}}"#));
    assert_eq!(v, 1.0);
    wait_for("up", || last(&storage, "up").is_some()).await;
    assert_eq!(last(&storage, "up").unwrap().1, 1.0);
    assert!(last(&storage, "go_gc").is_none(), "dropped by metric_relabel_configs");
    assert_eq!(last(&storage, "scrape_samples_scraped").unwrap().1, 2.0);
    assert_eq!(last(&storage, "scrape_samples_post_metric_relabeling").unwrap().1, 1.0);
    let head = requests.lock().unwrap()[0].clone();
    assert!(head.contains("authorization: basic dtpwdw=="), "{head}"); // base64("u:pw"), lowercased
    assert!(head.contains("accept: application/openmetrics-text;version=1.0.0"), "{head}");
    assert_eq!(scraper.targets().len(), 1);
    assert_eq!(scraper.targets()[0].discovered_labels.get("__meta_team"), Some("db"));

    // The target leaves the file: its loop stops and writes staleness markers.
    std::fs::write(&sd, "[]").unwrap();
    wait_for("staleness markers", || last(&storage, "a").is_some_and(|(_, v)| is_stale_nan(v))).await;
    assert!(is_stale_nan(last(&storage, "up").unwrap().1));
    assert!(scraper.targets().is_empty());
    scraper.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_body_size_limit_fails_the_scrape() {
    let addr = serve(Arc::new(Mutex::new(Vec::new()))).await;
    let config = Config::parse(&format!(
        "scrape_configs: [{{job_name: files, scrape_interval: 1s, body_size_limit: 10B, static_configs: [{{targets: ['{addr}']}}]}}]"
    ))
    .unwrap();
    let storage = Arc::new(MemStorage::new());
    let sink = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(storage.clone()))]));
    let scraper = Scraper::start(&config, &[], "s", sink);
    wait_for("up", || last(&storage, "up").is_some()).await;
    assert_eq!(last(&storage, "up").unwrap().1, 0.0);
    assert!(last(&storage, "a").is_none());
    scraper.stop();
}
