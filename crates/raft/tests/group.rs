//! Raft groups in one process (the in-process router), over RocksDB TSDBs
//! that hold the raft log: elect, write through the leader, read back on
//! every replica, lose the leader, elect again, restart a replica; restart
//! the whole group from disk, every head rebuilt from the raft log; and a
//! replica added after the log was purged catches up through a snapshot.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use pharos_model::{Labels, Matcher, Sample};
use pharos_raft::store::{LogStore, RaftDb};
use pharos_raft::testing::Router;
use pharos_raft::{Error, Member, NodeId, Replica, ReplicaOptions};
use pharos_storage::{SeriesSamples, Storage};
use pharos_tsdb::{RocksOptions, RocksStorage};

struct Node {
    replica: Arc<Replica>,
    tsdb: Arc<RocksStorage>,
}

/// Opens (or reopens) a TSDB as an ingester of a replicated shard does:
/// no log of its own, the raft column families beside its data. A TSDB
/// just dropped here is released once raft's tasks have wound down.
fn tsdb(dir: &std::path::Path, name: &str) -> Arc<RocksStorage> {
    let opts = RocksOptions {
        external_log: true,
        extra_column_families: pharos_raft::store::COLUMN_FAMILIES.map(String::from).to_vec(),
        ..RocksOptions::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match RocksStorage::open(&dir.join(name), opts.clone()) {
            Ok(s) => return Arc::new(s),
            Err(e) => {
                assert!(Instant::now() < deadline, "TSDB {name} never released: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn member(id: NodeId) -> Member {
    Member { name: format!("ingester-{id}"), grpc: format!("node-{id}") }
}

/// Test timings; a snapshot every `snapshot_every` entries (0: never).
fn opts(id: NodeId, dir: &std::path::Path, snapshot_every: u64) -> ReplicaOptions {
    let mut o = ReplicaOptions::new(id, member(id), dir.join(format!("raft-{id}")));
    o.heartbeat_ms = 50;
    o.election_timeout_min_ms = 200;
    o.election_timeout_max_ms = 400;
    if snapshot_every > 0 {
        o.snapshot_every = snapshot_every;
        o.log_keep = 0;
        // Several chunks even for a small snapshot.
        o.snapshot_chunk_bytes = 16 << 10;
    }
    o
}

async fn start(router: &Arc<Router>, id: NodeId, dir: &std::path::Path, tsdb: Arc<RocksStorage>) -> Node {
    start_with(router, opts(id, dir, 0), tsdb).await
}

async fn start_with(router: &Arc<Router>, opts: ReplicaOptions, tsdb: Arc<RocksStorage>) -> Node {
    let id = opts.id;
    // A replica stopped in this process releases its database when raft's
    // tasks have wound down.
    let deadline = Instant::now() + Duration::from_secs(10);
    let replica = loop {
        match Replica::start(opts.clone(), tsdb.clone(), router.transport(id)).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("replica {id} not started yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("replica {id}: {e}"),
        }
    };
    router.register(id, replica.raft().clone());
    Node { replica, tsdb }
}

fn batch(i: i64) -> Vec<SeriesSamples> {
    vec![SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]),
        samples: vec![Sample::new(1000 + i, i as f64)],
    }]
}

async fn leader(nodes: &BTreeMap<NodeId, Node>, except: Option<NodeId>) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (id, n) in nodes {
            let st = n.replica.status();
            if st.state == "leader" && Some(*id) != except {
                return *id;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(tsdb: &RocksStorage) -> usize {
    let m = [Matcher::new(pharos_model::MatchOp::Equal, "__name__", "up").unwrap()];
    tsdb.select("t", &m, i64::MIN, i64::MAX).unwrap().iter().map(|s| s.samples.len()).sum()
}

/// Three replicas (1, 2, 3) bootstrapped as a group.
async fn group(router: &Arc<Router>, dir: &std::path::Path, snapshot_every: u64) -> BTreeMap<NodeId, Node> {
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start_with(router, opts(id, dir, snapshot_every), tsdb(dir, &format!("tsdb-{id}"))).await);
    }
    let members: BTreeMap<NodeId, Member> = (1..=3).map(|id| (id, member(id))).collect();
    nodes[&1].replica.bootstrap(members).await.unwrap();
    nodes
}

/// Shuts replica `id` down and takes it out of the group; returns its TSDB.
async fn stop(router: &Router, nodes: &mut BTreeMap<NodeId, Node>, id: NodeId) -> Arc<RocksStorage> {
    let n = nodes.remove(&id).unwrap();
    n.replica.shutdown().await;
    router.unregister(id);
    n.tsdb
}

async fn eventually(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_write_fail_over_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new();
    let mut nodes = group(&router, dir.path(), 0).await;
    let l1 = leader(&nodes, None).await;

    // Writes go through the leader; a follower redirects.
    let follower = *nodes.keys().find(|id| **id != l1).unwrap();
    eventually(|| nodes[&follower].replica.status().leader == Some(l1), "the follower learns the leader").await;
    match nodes[&follower].replica.write("t", batch(0)).await {
        Err(Error::NotLeader { leader, leader_addr }) => {
            assert_eq!(leader, Some(l1));
            assert_eq!(leader_addr, Some(format!("node-{l1}")));
        }
        other => panic!("follower accepted a write: {other:?}"),
    }
    assert!(matches!(nodes[&follower].replica.read_barrier().await, Err(Error::NotLeader { .. })));
    // Concurrent writes are coalesced into fewer entries.
    let writes = (0..60).map(|i| {
        let r = nodes[&l1].replica.clone();
        async move { r.write("t", batch(i)).await }
    });
    for r in futures_join(writes).await {
        assert_eq!(r.unwrap().accepted, 1);
    }
    nodes[&l1].replica.read_barrier().await.unwrap();
    assert_eq!(count(&nodes[&l1].tsdb), 60);
    let st = nodes[&l1].replica.status();
    assert!(st.last_log_index.unwrap() < 60, "no coalescing: {st:?}");
    for n in nodes.values() {
        eventually(|| count(&n.tsdb) == 60, "every replica applies every write").await;
    }

    // The leader is cut off: the others elect a new one, which takes writes;
    // the old one cannot commit.
    router.isolate(l1);
    let l2 = leader(&nodes, Some(l1)).await;
    assert_ne!(l1, l2);
    for i in 60..80 {
        nodes[&l2].replica.write("t", batch(i)).await.unwrap();
    }
    let old = nodes[&l1].replica.clone();
    let stale = tokio::time::timeout(Duration::from_secs(2), old.write("t", batch(1000))).await;
    assert!(!matches!(stale, Ok(Ok(_))), "an isolated leader acknowledged a write");
    assert!(old.read_barrier().await.is_err(), "an isolated leader served a linearizable read");
    drop(old);

    // Healed, the old leader follows and catches up.
    router.heal(l1);
    eventually(|| count(&nodes[&l1].tsdb) == 80, "the old leader catches up").await;
    assert_eq!(nodes[&l1].replica.status().leader, Some(l2));

    // A replica restarted from its raft database rejoins with its state.
    let f = *nodes.keys().find(|id| **id != l2).unwrap();
    let kept = stop(&router, &mut nodes, f).await;
    let restarted = start(&router, f, dir.path(), kept).await;
    assert!(!restarted.replica.is_fresh());
    nodes.insert(f, restarted);
    nodes[&l2].replica.write("t", batch(80)).await.unwrap();
    eventually(|| count(&nodes[&f].tsdb) == 81, "the restarted replica applies new writes").await;

    // A wiped replica (new TSDB, new raft database) catches up from the log.
    drop(stop(&router, &mut nodes, f).await);
    std::fs::remove_dir_all(dir.path().join(format!("raft-{f}"))).unwrap();
    let wiped = start(&router, f, dir.path(), tsdb(dir.path(), &format!("tsdb-{f}-wiped"))).await;
    assert!(wiped.replica.is_fresh());
    nodes.insert(f, wiped);
    eventually(|| count(&nodes[&f].tsdb) == 81, "the wiped replica replays the whole log").await;
    for n in nodes.values() {
        n.replica.shutdown().await;
    }
}

/// A follower read (the leader's read index, then the follower's own apply)
/// sees every write acknowledged before it, on either follower, right after
/// the acknowledgement (when the follower has typically not applied it yet);
/// a follower cut off from the leader refuses rather than answer stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_reads_see_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new();
    let nodes = group(&router, dir.path(), 0).await;
    let l = leader(&nodes, None).await;
    let followers: Vec<NodeId> = nodes.keys().copied().filter(|id| *id != l).collect();
    for i in 0..40 {
        nodes[&l].replica.write("t", batch(i)).await.unwrap();
        let f = &nodes[&followers[i as usize % 2]];
        f.replica.follower_read_barrier().await.unwrap();
        assert_eq!(count(&f.tsdb), i as usize + 1, "a follower read missed an acknowledged write");
    }
    // On the leader it is the leader's own barrier.
    nodes[&l].replica.follower_read_barrier().await.unwrap();
    let st = nodes[&l].replica.status();
    assert_eq!((st.leader_reads, st.follower_reads), (1, 0));
    for f in &followers {
        assert_eq!(nodes[f].replica.status().follower_reads, 20);
    }

    // Cut off from the leader, a follower gets no read index and refuses.
    let (cut, other) = (followers[0], followers[1]);
    router.isolate(cut);
    nodes[&l].replica.write("t", batch(40)).await.unwrap();
    assert!(nodes[&cut].replica.follower_read_barrier().await.is_err(), "a cut-off follower served a read");
    nodes[&other].replica.follower_read_barrier().await.unwrap();
    assert_eq!(count(&nodes[&other].tsdb), 41);
    // Healed, it serves reads again (once it knows the leader again).
    router.heal(cut);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = nodes[&cut].replica.follower_read_barrier().await {
        assert!(Instant::now() < deadline, "the healed follower serves no read: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&nodes[&cut].tsdb), 41);
    for n in nodes.values() {
        n.replica.shutdown().await;
    }
}

/// Every replica takes a snapshot every 20 entries and purges its log up
/// to it; a replica added afterwards cannot get the early entries from any
/// log, so it must install a snapshot, and then holds every sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_after_the_purge_catches_up_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new();
    let mut nodes = group(&router, dir.path(), 20).await;
    let l = leader(&nodes, None).await;
    // One write at a time: one entry each, to three series.
    let sample = |i: i64| {
        vec![SeriesSamples {
            labels: Labels::from_pairs(&[("__name__", "up"), ("s", &(i % 3).to_string())]),
            samples: vec![Sample::new(1000 + i, i as f64)],
        }]
    };
    for i in 0..300 {
        nodes[&l].replica.write("t", sample(i)).await.unwrap();
    }
    eventually(
        || nodes[&l].replica.status().purged_index.is_some_and(|p| p >= 200),
        "the leader purges its log up to a snapshot",
    )
    .await;
    let st = nodes[&l].replica.status();
    assert!(st.snapshots_built >= 1 && st.snapshots_installed == 0, "{st:?}");
    // Only the newest snapshot is kept.
    let snaps = |id: NodeId| -> Vec<String> {
        std::fs::read_dir(dir.path().join(format!("raft-{id}/snapshots")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap-"))
            .collect()
    };
    eventually(|| snaps(l).len() == 1, "one snapshot kept on the leader").await;

    // A new replica joins: learner, catches up, voter.
    let new = start_with(&router, opts(4, dir.path(), 20), tsdb(dir.path(), "tsdb-4")).await;
    nodes.insert(4, new);
    let started = Instant::now();
    nodes[&l].replica.add_replica(4, member(4)).await.unwrap();
    eventually(|| count(&nodes[&4].tsdb) == 300, "the new replica holds every sample").await;
    eprintln!("replica 4 caught up in {} ms", started.elapsed().as_millis());
    let st4 = nodes[&4].replica.status();
    assert_eq!(st4.snapshots_installed, 1, "{st4:?}");
    assert!(st4.voters.contains(&4), "{st4:?}");
    assert_eq!(snaps(4).len(), 1, "the installed snapshot is kept to serve others");
    let m = [Matcher::new(pharos_model::MatchOp::Equal, "__name__", "up").unwrap()];
    let all = |t: &RocksStorage| t.select("t", &m, i64::MIN, i64::MAX).unwrap();
    assert_eq!(all(&nodes[&4].tsdb), all(&nodes[&l].tsdb));

    // It follows the log from there, and keeps it all across a restart.
    for i in 300..310 {
        nodes[&l].replica.write("t", sample(i)).await.unwrap();
    }
    eventually(|| count(&nodes[&4].tsdb) == 310, "the new replica applies new writes").await;
    let kept = stop(&router, &mut nodes, 4).await;
    let again = start_with(&router, opts(4, dir.path(), 20), kept).await;
    assert!(!again.replica.is_fresh());
    nodes.insert(4, again);
    nodes[&l].replica.write("t", sample(310)).await.unwrap();
    eventually(|| count(&nodes[&4].tsdb) == 311, "the restarted replica applies new writes").await;
    let purged = nodes[&l].replica.status().purged_index.unwrap();
    for n in nodes.values() {
        n.replica.shutdown().await;
    }
    drop(nodes);

    // The purged entries are gone from the leader's raft log.
    let leader_tsdb = tsdb(dir.path(), &format!("tsdb-{l}"));
    let mut log = LogStore::new(RaftDb::new(leader_tsdb.db(), leader_tsdb.group_sync()).unwrap());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(purged));
    assert!(log.try_get_log_entries(0..=purged).await.unwrap().is_empty());
    assert!(!log.try_get_log_entries(purged + 1..).await.unwrap().is_empty());
}

/// The raft log is the TSDB's write-ahead log: a TSDB reopened after a
/// stop without a flush holds only what was flushed, and starting the
/// replica applies the raft log from the flushed position on again. Every
/// replica stops, so no replica can get the data from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_rebuilds_every_head_from_the_raft_log() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::new();
    let mut nodes = group(&router, dir.path(), 0).await;
    let l = leader(&nodes, None).await;
    for i in 0..30 {
        nodes[&l].replica.write("t", batch(i)).await.unwrap();
    }
    for n in nodes.values() {
        eventually(|| count(&n.tsdb) == 30, "every replica applies every write").await;
        n.tsdb.flush().unwrap();
    }
    for i in 30..50 {
        nodes[&l].replica.write("t", batch(i)).await.unwrap();
    }
    for n in nodes.values() {
        eventually(|| count(&n.tsdb) == 50, "every replica applies every write").await;
    }
    for id in 1..=3 {
        drop(stop(&router, &mut nodes, id).await);
    }
    for id in 1..=3 {
        let t = tsdb(dir.path(), &format!("tsdb-{id}"));
        assert_eq!(count(&t), 30, "replica {id}: only the flushed samples are in the TSDB itself");
        assert!(t.log_position().unwrap().is_some());
        nodes.insert(id, start(&router, id, dir.path(), t).await);
    }
    for n in nodes.values() {
        eventually(|| count(&n.tsdb) == 50, "every head is rebuilt from the raft log").await;
    }
    let l = leader(&nodes, None).await;
    nodes[&l].replica.write("t", batch(50)).await.unwrap();
    for n in nodes.values() {
        eventually(|| count(&n.tsdb) == 51, "the restarted group takes writes").await;
    }
    for n in nodes.values() {
        n.replica.shutdown().await;
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
