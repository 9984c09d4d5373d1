//! Which replica a remote shard reads: in leader mode always the one that
//! answered last; in follower mode each replica in turn, and a replica that
//! is down makes the read move on to the next one.
//!
//! The replicas here are unreplicated ingesters (no raft), which answer
//! every read, so only the client's routing is under test; the follower
//! read itself is tested in `crates/raft/tests/group.rs` and
//! `tests/replication.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pharos_cluster::{LocalShard, ReadReplica, RemoteShard, Shard, serve_ingester};
use pharos_model::{Labels, MatchOp, Matcher, Series};
use pharos_storage::{AppendResult, Error, MemStorage, MetaQuery, SeriesSamples, Storage};

/// A storage that counts the selects it serves.
#[derive(Default)]
struct Counted {
    inner: MemStorage,
    selects: AtomicUsize,
}

impl Storage for Counted {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        self.inner.append(tenant, batch)
    }
    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        self.selects.fetch_add(1, Ordering::SeqCst);
        self.inner.select(tenant, matchers, mint, maxt)
    }
    fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        self.inner.series(tenant, q)
    }
    fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.inner.label_names(tenant, q)
    }
    fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.inner.label_values(tenant, name, q)
    }
    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }
}

/// Three ingesters on loopback ports; their storages and addresses, with
/// raft node ids 0..3. The servers run until the test's runtime ends.
async fn replicas() -> (Vec<Arc<Counted>>, Vec<(Option<u64>, String)>) {
    let (mut storages, mut addrs) = (Vec::new(), Vec::new());
    for n in 0..3 {
        let storage = Arc::new(Counted::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push((Some(n), listener.local_addr().unwrap().to_string()));
        tokio::spawn(serve_ingester(listener, LocalShard::new(storage.clone()), None, std::future::pending()));
        storages.push(storage);
    }
    (storages, addrs)
}

fn selects(storages: &[Arc<Counted>]) -> Vec<usize> {
    storages.iter().map(|s| s.selects.load(Ordering::SeqCst)).collect()
}

async fn read(shard: &RemoteShard) {
    let m = [Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()];
    shard.select("t", &m, 0, 1000).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_mode_reads_one_replica_and_follower_mode_each_in_turn() {
    let (storages, addrs) = replicas().await;
    let leader = RemoteShard::replicated(0, &addrs).unwrap();
    for _ in 0..6 {
        read(&leader).await;
    }
    assert_eq!(selects(&storages), [6, 0, 0]);

    let spread = RemoteShard::replicated(0, &addrs).unwrap().with_read_replica(ReadReplica::Follower);
    for _ in 0..6 {
        read(&spread).await;
    }
    assert_eq!(selects(&storages), [8, 2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_mode_read_moves_on_from_a_replica_that_is_down() {
    let (storages, mut addrs) = replicas().await;
    // Replica 1 is down: nothing listens at its address.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    addrs[1].1 = gone.local_addr().unwrap().to_string();
    drop(gone);
    let spread = RemoteShard::replicated(0, &addrs).unwrap().with_read_replica(ReadReplica::Follower);
    for _ in 0..6 {
        read(&spread).await;
    }
    // Its turns went to the next replica.
    assert_eq!(selects(&storages), [2, 0, 4]);
}
