//! The metadata endpoints over HTTP, answered by two RocksDB ingesters
//! behind gRPC: `start`/`end` leave out series without samples in the
//! range, and `limit` truncates with Prometheus 3's warning.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pharos_api::{Metrics, QueryState};
use pharos_cluster::{Cluster, LocalShard, RemoteShard, Shard, serve_ingester};
use pharos_model::{Labels, Sample};
use pharos_promql::Engine;
use pharos_storage::SeriesSamples;
use pharos_tsdb::{RocksOptions, RocksStorage};
use serde_json::{Value as J, json};
use tokio::net::TcpListener;

fn series(pairs: &[(&str, &str)], ts: &[i64]) -> SeriesSamples {
    SeriesSamples { labels: Labels::from_pairs(pairs), samples: ts.iter().map(|t| Sample::new(*t, 1.0)).collect() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_series_honour_the_time_range_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut shards: Vec<Arc<dyn Shard>> = Vec::new();
    for i in 0..2u32 {
        let storage = Arc::new(RocksStorage::open(&dir.path().join(i.to_string()), RocksOptions::default()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_ingester(listener, LocalShard::new(storage), None, std::future::pending()));
        shards.push(Arc::new(RemoteShard::new(i, &addr).unwrap()));
    }
    let cluster = Arc::new(Cluster::new(shards));
    let hour = 3_600_000;
    let batch = vec![
        series(&[("__name__", "m"), ("job", "a"), ("zone", "x")], &[10_000, 20_000]),
        series(&[("__name__", "m"), ("job", "b")], &[3 * hour]),
        series(&[("__name__", "n"), ("job", "c"), ("only_c", "1")], &[50_000]),
        series(&[("__name__", "n"), ("job", "d")], &[1000, 3 * hour]),
    ];
    let r = cluster.append(pharos_model::DEFAULT_TENANT, batch).await.unwrap();
    assert_eq!(r.accepted, 6);

    let state = QueryState { cluster, engine: Arc::new(Engine::default()), metrics: Metrics::new() };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let limits = pharos_api::HttpLimits::default();
        pharos_api::serve(listener, pharos_api::query_routes(state), &limits, std::future::pending()).await
    });
    let get = async |path: &str| -> J {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    };

    // The range leaves out the series without samples in it.
    assert_eq!(get("/api/v1/labels?start=0&end=30").await["data"], json!(["__name__", "job", "zone"]));
    assert_eq!(get("/api/v1/labels?start=40&end=60").await["data"], json!(["__name__", "job", "only_c"]));
    assert_eq!(get("/api/v1/label/job/values?start=3600&end=20000").await["data"], json!(["b", "d"]));
    assert_eq!(get("/api/v1/label/job/values?start=5&end=30").await["data"], json!(["a"]));
    assert_eq!(get("/api/v1/label/job/values?end=0").await["data"], json!([]));
    let v = get("/api/v1/series?match[]=%7Bjob%3D~%22.%2B%22%7D&start=5&end=30").await;
    assert_eq!(v["data"], json!([{"__name__": "m", "job": "a", "zone": "x"}]), "{v}");
    // Without a range: every series.
    let v = get("/api/v1/labels").await;
    assert_eq!(v["data"], json!(["__name__", "job", "only_c", "zone"]), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");

    // The limit truncates the sorted answer, with Prometheus 3's warning.
    let v = get("/api/v1/label/job/values?limit=2").await;
    assert_eq!(v["data"], json!(["a", "b"]), "{v}");
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]), "{v}");
    let v = get("/api/v1/label/job/values?limit=4").await;
    assert_eq!(v["data"], json!(["a", "b", "c", "d"]), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let v = get("/api/v1/labels?start=0&end=30&limit=2").await;
    assert_eq!(v["data"], json!(["__name__", "job"]), "{v}");
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]), "{v}");
    let v = get("/api/v1/series?match[]=%7Bjob%3D~%22.%2B%22%7D&limit=3").await;
    let jobs: Vec<&str> = v["data"].as_array().unwrap().iter().map(|s| s["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["a", "b", "c"], "{v}");
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]), "{v}");
}
