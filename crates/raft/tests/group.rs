//! A three-replica raft group in one process (the in-process router):
//! elect, write through the leader, read back on every replica, lose the
//! leader, elect again, restart a replica from its raft database.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_model::{Labels, Matcher, Sample};
use pharos_raft::testing::Router;
use pharos_raft::{Error, Member, NodeId, Replica, ReplicaOptions};
use pharos_tsdb::{MemStorage, SeriesSamples, Storage};

struct Node {
    replica: Arc<Replica>,
    tsdb: Arc<MemStorage>,
}

fn member(id: NodeId) -> Member {
    Member { name: format!("ingester-{id}"), grpc: format!("node-{id}") }
}

fn opts(id: NodeId, dir: &std::path::Path) -> ReplicaOptions {
    let mut o = ReplicaOptions::new(id, member(id), dir.join(format!("raft-{id}")));
    o.heartbeat_ms = 50;
    o.election_timeout_min_ms = 200;
    o.election_timeout_max_ms = 400;
    o
}

async fn start(router: &Arc<Router>, id: NodeId, dir: &std::path::Path, tsdb: Arc<MemStorage>) -> Node {
    // A replica stopped in this process releases its database when raft's
    // tasks have wound down.
    let deadline = Instant::now() + Duration::from_secs(10);
    let replica = loop {
        match Replica::start(opts(id, dir), tsdb.clone(), router.transport(id)).await {
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

fn count(tsdb: &MemStorage) -> usize {
    let m = [Matcher::new(pharos_model::MatchOp::Equal, "__name__", "up").unwrap()];
    tsdb.select("t", &m, i64::MIN, i64::MAX).unwrap().iter().map(|s| s.samples.len()).sum()
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
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(&router, id, dir.path(), Arc::new(MemStorage::new())).await);
    }
    let members: BTreeMap<NodeId, Member> = (1..=3).map(|id| (id, member(id))).collect();
    nodes[&1].replica.bootstrap(members).await.unwrap();
    let l1 = leader(&nodes, None).await;

    // Writes go through the leader; a follower redirects.
    let follower = *nodes.keys().find(|id| **id != l1).unwrap();
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
    let n = nodes.remove(&f).unwrap();
    n.replica.shutdown().await;
    router.unregister(f);
    drop(n.replica);
    let restarted = start(&router, f, dir.path(), n.tsdb.clone()).await;
    assert!(!restarted.replica.is_fresh());
    nodes.insert(f, restarted);
    nodes[&l2].replica.write("t", batch(80)).await.unwrap();
    eventually(|| count(&nodes[&f].tsdb) == 81, "the restarted replica applies new writes").await;

    // A wiped replica (new TSDB, new raft database) catches up from the log.
    let n = nodes.remove(&f).unwrap();
    n.replica.shutdown().await;
    router.unregister(f);
    drop(n);
    std::fs::remove_dir_all(dir.path().join(format!("raft-{f}"))).unwrap();
    let wiped = start(&router, f, dir.path(), Arc::new(MemStorage::new())).await;
    assert!(wiped.replica.is_fresh());
    nodes.insert(f, wiped);
    eventually(|| count(&nodes[&f].tsdb) == 81, "the wiped replica replays the whole log").await;
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
