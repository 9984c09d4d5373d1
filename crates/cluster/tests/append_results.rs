//! The write contract across gRPC: a [`RemoteShard`] reports the same
//! [`AppendResult`] as a [`LocalShard`] over the same storage would, for
//! writes with exact duplicates and every kind of rejection (each rejection
//! under its series' labels, in the storage's order).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::Server;
use pharos_cluster::{LocalShard, RemoteShard, Shard};
use pharos_model::{Labels, Sample};
use pharos_storage::{AppendResult, MemStorage, SeriesSamples, Storage};
use pharos_tsdb::{RocksOptions, RocksStorage};

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs(pairs),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

/// Writes, one after the other, whose results cover the contract.
fn writes() -> Vec<Vec<SeriesSamples>> {
    let a: &[(&str, &str)] = &[("__name__", "a")];
    let b: &[(&str, &str)] = &[("__name__", "b"), ("job", "x")];
    let c: &[(&str, &str)] = &[("__name__", "c")];
    vec![
        vec![series(a, &[(10, 1.0), (20, 2.0)]), series(b, &[(10, 1.0)]), series(c, &[(50, 5.0)])],
        vec![
            // Rejected out of order, after series whose samples are stored.
            series(c, &[(40, 4.0)]),
            // An exact duplicate, a duplicate timestamp and an out-of-order sample.
            series(a, &[(20, 2.0), (20, 3.0), (15, 1.0), (30, 3.0)]),
            // No metric name.
            series(&[("job", "x")], &[(10, 1.0)]),
            // The same series twice in one batch.
            series(b, &[(5, 0.0), (30, 3.0)]),
            series(b, &[(30, 3.0), (25, 9.0)]),
        ],
    ]
}

async fn same_results(local_storage: Arc<dyn Storage>, remote_storage: Arc<dyn Storage>) {
    let local = LocalShard::new(local_storage);
    let server = Server::bind(remote_storage).await;
    let remote = RemoteShard::new(3, &server.addr).unwrap();
    let mut all = AppendResult::default();
    for w in writes() {
        let want = local.append("t", w.clone()).await.unwrap();
        let got = remote.append("t", w).await.unwrap();
        assert_eq!(got, want);
        all.merge(got);
    }
    // The writes above test what they claim to.
    assert!(all.duplicates >= 2, "{all:?}");
    assert!(all.rejected.len() >= 5, "{all:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_shard_reports_what_a_local_one_does() {
    same_results(Arc::new(MemStorage::new()), Arc::new(MemStorage::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_rocks_shard_reports_what_a_local_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| Arc::new(RocksStorage::open(&dir.path().join(name), RocksOptions::default()).unwrap());
    same_results(open("local"), open("remote")).await;
}
