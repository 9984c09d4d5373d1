//! A replicated write is acknowledged only once its raft entry is synced to
//! disk on a quorum: with every replica's log sync held, no write returns;
//! released, it does. The leader syncs its log for each sequential write.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pharos_model::{Labels, Sample};
use pharos_raft::testing::Router;
use pharos_raft::{Member, NodeId, Replica, ReplicaOptions};
use pharos_storage::SeriesSamples;
use pharos_tsdb::{RocksOptions, RocksStorage, SyncHook};

/// Holds every log sync that starts while it is closed.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
    }
}

fn member(id: NodeId) -> Member {
    Member { name: format!("ingester-{id}"), grpc: format!("node-{id}") }
}

fn batch(i: i64) -> Vec<SeriesSamples> {
    vec![SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]),
        samples: vec![Sample::new(1000 + i, i as f64)],
    }]
}

struct Group {
    replicas: BTreeMap<NodeId, Arc<Replica>>,
    tsdbs: BTreeMap<NodeId, Arc<RocksStorage>>,
}

async fn group(dir: &std::path::Path, gate: &Arc<Gate>) -> Group {
    let router = Router::new();
    let (mut replicas, mut tsdbs) = (BTreeMap::new(), BTreeMap::new());
    for id in 1..=3 {
        let g = gate.clone();
        let opts = RocksOptions {
            external_log: true,
            extra_column_families: pharos_raft::store::COLUMN_FAMILIES.map(String::from).to_vec(),
            sync_fault: Some(SyncHook(Arc::new(move || {
                g.pass();
                Ok(())
            }))),
            ..RocksOptions::default()
        };
        let tsdb = Arc::new(RocksStorage::open(&dir.join(format!("tsdb-{id}")), opts).unwrap());
        let mut o = ReplicaOptions::new(id, member(id), dir.join(format!("raft-{id}")));
        o.heartbeat_ms = 50;
        o.election_timeout_min_ms = 200;
        o.election_timeout_max_ms = 400;
        let r = Replica::start(o, tsdb.clone(), router.transport(id)).await.unwrap();
        router.register(id, r.raft().clone());
        replicas.insert(id, r);
        tsdbs.insert(id, tsdb);
    }
    let members = (1..=3).map(|id| (id, member(id))).collect();
    replicas[&1].bootstrap(members).await.unwrap();
    Group { replicas, tsdbs }
}

async fn leader(g: &Group) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((id, _)) = g.replicas.iter().find(|(_, r)| r.status().state == "leader") {
            return *id;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledgement_until_the_raft_log_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let g = group(dir.path(), &gate).await;
    let l = leader(&g).await;
    g.replicas[&l].write("t", batch(0)).await.unwrap();

    gate.set(true);
    let r = g.replicas[&l].clone();
    let write = tokio::spawn(async move { r.write("t", batch(1)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!write.is_finished(), "a write was acknowledged while every replica's log sync was held");
    gate.set(false);
    let res = tokio::time::timeout(Duration::from_secs(10), write).await.unwrap().unwrap().unwrap();
    assert_eq!(res.accepted, 1);

    // Every sequential write waits for a sync of the leader's log.
    let before = g.tsdbs[&l].group_sync().syncs();
    for i in 2..22 {
        g.replicas[&l].write("t", batch(i)).await.unwrap();
    }
    let syncs = g.tsdbs[&l].group_sync().syncs() - before;
    assert!(syncs >= 20, "the leader synced its log {syncs} times for 20 sequential writes");
    for r in g.replicas.values() {
        r.shutdown().await;
    }
}
