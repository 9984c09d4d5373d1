//! `/api/v1/status/cluster` with the live raft view of every replicated
//! shard: a background task asks each replica for its status every second,
//! and the page renders the topology with the newest answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use parking_lot::Mutex;
use pharos_raft::ReplicaStatus;
use serde_json::{Value, json};

use crate::topology::Topology;

/// How often replicas are asked, and how long an answer may take.
const POLL_EVERY: Duration = Duration::from_secs(1);
const POLL_TIMEOUT: Duration = Duration::from_millis(800);

type Answers = HashMap<String, Option<ReplicaStatus>>;

/// The data of `/api/v1/status/cluster`, kept fresh by a background task.
pub fn provider(topo: Topology) -> Arc<dyn Fn() -> Value + Send + Sync> {
    let answers: Arc<Mutex<Answers>> = Arc::default();
    if topo.shards.iter().any(|s| s.replicas.len() > 1) {
        let (topo, answers) = (topo.clone(), answers.clone());
        tokio::spawn(async move {
            loop {
                let polls = topo.shards.iter().filter(|s| s.replicas.len() > 1).flat_map(|s| &s.replicas).map(|r| {
                    let (id, grpc) = (r.id.clone(), r.grpc.clone().unwrap_or_default());
                    async move { (id, pharos_cluster::replica_status(&grpc, POLL_TIMEOUT).await.ok()) }
                });
                let got: Answers = join_all(polls).await.into_iter().collect();
                *answers.lock() = got;
                tokio::time::sleep(POLL_EVERY).await;
            }
        });
    }
    Arc::new(move || render(&topo, &answers.lock()))
}

/// The topology's status with the raft view of replicated shards merged in.
pub fn render(topo: &Topology, answers: &Answers) -> Value {
    let mut v = topo.status();
    let Some(shards) = v.get_mut("shards").and_then(Value::as_array_mut) else { return v };
    for (st, shard) in shards.iter_mut().zip(&topo.shards) {
        st["replication_factor"] = json!(shard.replicas.len());
        if shard.replicas.len() < 2 {
            continue;
        }
        let statuses: Vec<&ReplicaStatus> =
            shard.replicas.iter().filter_map(|r| answers.get(&r.id).and_then(Option::as_ref)).collect();
        // The replica that says it leads, in the newest term.
        let leader = statuses.iter().filter(|s| s.state == "leader").max_by_key(|s| s.term);
        st["leader"] = json!(leader.map(|l| l.name.clone()));
        st["term"] = json!(statuses.iter().map(|s| s.term).max());
        st["commit_index"] = json!(leader.map(|l| l.commit_index));
        st["applied_index"] = json!(leader.and_then(|l| l.applied_index));
        st["members"] = json!(leader.map(|l| l.members.values().map(|m| m.name.clone()).collect::<Vec<_>>()));
        if let Some(reps) = st.get_mut("replicas").and_then(Value::as_array_mut) {
            for (rv, r) in reps.iter_mut().zip(&shard.replicas) {
                match answers.get(&r.id).and_then(Option::as_ref) {
                    None => rv["state"] = json!("unreachable"),
                    Some(s) => {
                        rv["state"] = json!(s.state);
                        rv["term"] = json!(s.term);
                        rv["last_log_index"] = json!(s.last_log_index);
                        rv["commit_index"] = json!(s.commit_index);
                        rv["applied_index"] = json!(s.applied_index);
                        rv["snapshot_index"] = json!(s.snapshot_index);
                        rv["purged_index"] = json!(s.purged_index);
                        rv["snapshots_installed"] = json!(s.snapshots_installed);
                        let lag = leader.and_then(|l| l.lag.get(&s.id).copied()).unwrap_or_else(|| {
                            leader
                                .and_then(|l| l.last_log_index)
                                .unwrap_or(0)
                                .saturating_sub(s.last_log_index.unwrap_or(0))
                        });
                        rv["lag"] = json!(lag);
                    }
                }
            }
        }
    }
    v
}
