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
                    async move { (id, crate::replica_status(&grpc, POLL_TIMEOUT).await.ok()) }
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
        let term = statuses.iter().map(|s| s.term).max();
        // Without an answer from it: the leader the others name in the newest term.
        let named = || statuses.iter().filter(|s| Some(s.term) == term).find_map(|s| s.leader_name.clone());
        st["leader"] = json!(leader.map(|l| l.name.clone()).or_else(named));
        st["term"] = json!(term);
        st["commit_index"] = json!(leader.map(|l| l.commit_index));
        st["applied_index"] = json!(leader.and_then(|l| l.applied_index));
        // The group as the leader sees it, else as the newest answer does.
        let view = leader.or_else(|| statuses.iter().max_by_key(|s| (s.term, s.last_log_index)));
        let names = |ids: &[u64]| -> Vec<String> {
            let v = view.map(|v| &v.members);
            ids.iter().map(|id| v.and_then(|m| m.get(id)).map_or_else(|| id.to_string(), |m| m.name.clone())).collect()
        };
        st["members"] = json!(view.map(|v| names(&v.voters)));
        st["learners"] = json!(view.map(|v| names(&v.learners)));
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
                        rv["leader_reads"] = json!(s.leader_reads);
                        rv["follower_reads"] = json!(s.follower_reads);
                        // Entries behind the leader's log; unknown without a leader.
                        let lag = leader.map(|l| {
                            l.lag.get(&s.id).copied().unwrap_or_else(|| {
                                l.last_log_index.unwrap_or(0).saturating_sub(s.last_log_index.unwrap_or(0))
                            })
                        });
                        rv["lag"] = json!(lag);
                    }
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use pharos_raft::Member;

    use super::*;
    use crate::topology::{Endpoint, ShardTopology};

    fn topo() -> Topology {
        let ep = |id: &str| Endpoint::new(id, Some(format!("{id}:1")), format!("{id}:2"));
        Topology {
            shards: vec![ShardTopology { id: 0, replicas: vec![ep("ingester-0"), ep("ingester-1"), ep("ingester-2")] }],
            scrapers: vec![],
            queriers: vec![],
            gateway: ep("gateway"),
        }
    }

    fn status(id: u64, state: &str, term: u64, leader: Option<u64>, last: u64) -> ReplicaStatus {
        let members: BTreeMap<u64, Member> =
            (0..3).map(|n| (n, Member { name: format!("ingester-{n}"), grpc: format!("old-{n}") })).collect();
        ReplicaStatus {
            id,
            name: format!("ingester-{id}"),
            state: state.into(),
            term,
            leader,
            leader_name: leader.map(|l| format!("ingester-{l}")),
            leader_addr: None,
            last_log_index: Some(last),
            commit_index: last,
            applied_index: Some(last),
            voters: vec![0, 1, 2],
            learners: vec![],
            members,
            lag: if state == "leader" { BTreeMap::from([(0, 5), (2, 0)]) } else { BTreeMap::new() },
            millis_since_quorum_ack: None,
            snapshot_index: None,
            purged_index: None,
            snapshots_built: 0,
            snapshots_installed: 0,
            last_snapshot_install_ms: 0,
            leader_reads: 0,
            follower_reads: 3,
        }
    }

    #[test]
    fn every_shard_shows_leader_term_indexes_members_and_lag_per_replica() {
        let answers: Answers = HashMap::from([
            ("ingester-0".to_string(), Some(status(0, "follower", 4, Some(1), 95))),
            ("ingester-1".to_string(), Some(status(1, "leader", 4, Some(1), 100))),
            ("ingester-2".to_string(), None),
        ]);
        let v = render(&topo(), &answers);
        let s = &v["shards"][0];
        assert_eq!(s["leader"], "ingester-1");
        assert_eq!(
            (s["term"].as_u64(), s["commit_index"].as_u64(), s["applied_index"].as_u64()),
            (Some(4), Some(100), Some(100))
        );
        assert_eq!(s["members"], json!(["ingester-0", "ingester-1", "ingester-2"]));
        let r = &s["replicas"];
        assert_eq!(
            (r[0]["state"].as_str(), r[0]["lag"].as_u64(), r[0]["applied_index"].as_u64()),
            (Some("follower"), Some(5), Some(95))
        );
        assert_eq!((r[1]["state"].as_str(), r[1]["lag"].as_u64()), (Some("leader"), Some(0)));
        assert_eq!(r[0]["follower_reads"], 3);
        assert_eq!(r[2]["state"], "unreachable");

        // The leader does not answer: the others name it; no lag without it.
        let answers: Answers = HashMap::from([
            ("ingester-0".to_string(), Some(status(0, "follower", 4, Some(1), 95))),
            ("ingester-1".to_string(), None),
            ("ingester-2".to_string(), Some(status(2, "follower", 4, Some(1), 97))),
        ]);
        let v = render(&topo(), &answers);
        let s = &v["shards"][0];
        assert_eq!(s["leader"], "ingester-1");
        assert!(s["commit_index"].is_null(), "{s}");
        assert_eq!(s["members"], json!(["ingester-0", "ingester-1", "ingester-2"]));
        assert!(s["replicas"][0]["lag"].is_null(), "{s}");
    }
}
