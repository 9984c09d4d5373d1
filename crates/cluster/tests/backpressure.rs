//! A slow shard holds its writers back: with a write budget of one batch,
//! a second batch reaches the ingester only after the first was answered.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Gated, OpenOnDrop, Server};
use pharos_cluster::{RemoteShard, Shard, batch_cost};
use pharos_model::{Labels, Sample};
use pharos_storage::SeriesSamples;

fn batch(name: &str) -> Vec<SeriesSamples> {
    (0..10)
        .map(|i| SeriesSamples {
            labels: Labels::from_pairs(&[("__name__", name), ("i", &i.to_string())]),
            samples: vec![Sample::new(1000, i as f64)],
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shard_takes_one_batch_at_a_time_within_its_budget() {
    let storage = Arc::new(Gated::default());
    let _gate = OpenOnDrop(storage.clone());
    let server = Server::bind(storage.clone()).await;

    // Room for one batch and a half: the second waits for the first.
    let one = batch_cost(&batch("a"), u32::MAX);
    let remote = RemoteShard::new(0, &server.addr).unwrap().with_inflight_bytes(one + one / 2);
    let (r1, r2) = (remote.clone(), remote.clone());
    let first = tokio::spawn(async move { r1.append("t", batch("a")).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while storage.entered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first batch never reached the shard");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = tokio::spawn(async move { r2.append("t", batch("b")).await });
    // Without the budget the second batch would be inside the shard by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(storage.entered.load(Ordering::SeqCst), 1, "the second batch went past the budget");
    storage.open();
    let (a, b) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_eq!((a.accepted, b.accepted), (10, 10));
    assert_eq!(storage.most_inside.load(Ordering::SeqCst), 1, "two batches were in the slow shard at once");
    server.stop().await;
}
