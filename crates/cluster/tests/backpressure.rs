//! A slow shard holds its writers back: with a write budget of one batch,
//! a second batch reaches the ingester only after the first was answered.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pharos_cluster::{LocalShard, RemoteShard, Shard, batch_cost, serve_ingester};
use pharos_model::{Labels, Matcher, Sample, Series};
use pharos_tsdb::{AppendResult, Error, MemStorage, SeriesSamples, Storage};

/// A storage whose appends wait for a gate, counting how many wait at once.
#[derive(Default)]
struct Gated {
    inner: MemStorage,
    open: Mutex<bool>,
    opened: Condvar,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    entered: AtomicUsize,
}

impl Gated {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Storage for Gated {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.inner.append(tenant, batch)
    }
    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        self.inner.select(tenant, matchers, mint, maxt)
    }
    fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error> {
        self.inner.series(tenant, matchers)
    }
    fn label_names(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        self.inner.label_names(tenant, matchers)
    }
    fn label_values(&self, tenant: &str, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        self.inner.label_values(tenant, name, matchers)
    }
    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }
}

fn batch(name: &str) -> Vec<SeriesSamples> {
    (0..10)
        .map(|i| SeriesSamples {
            labels: Labels::from_pairs(&[("__name__", name), ("i", &i.to_string())]),
            samples: vec![Sample::new(1000, i as f64)],
        })
        .collect()
}

/// Opens the gate when dropped, so a failing test does not leave appends
/// waiting (the runtime waits for its blocking threads before it exits).
struct OpenOnDrop(Arc<Gated>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shard_takes_one_batch_at_a_time_within_its_budget() {
    let storage = Arc::new(Gated::default());
    let _gate = OpenOnDrop(storage.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shard = LocalShard::new(storage.clone());
    let server = tokio::spawn(serve_ingester(listener, shard, None, async {
        let _ = stopped.await;
    }));

    // Room for one batch and a half: the second waits for the first.
    let one = batch_cost(&batch("a"), u32::MAX);
    let remote = RemoteShard::new(0, &addr).unwrap().with_inflight_bytes(one + one / 2);
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
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
