//! Raft group formation of a replicated shard's ingester: from the
//! topology, [`plan_group`] decides the group's members, where this
//! replica sends its raft RPCs, and whether it forms a new group (the
//! first replica of its shard does); [`start_replica`] carries that out.
//!
//! A shard with one replica has no raft group: its ingester writes straight
//! to the TSDB, as `pharos up` does (see docs/architecture.md, Decisions).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use pharos_raft::{Member, NodeId, Replica, ReplicaOptions};
use pharos_tsdb::RocksStorage;

use crate::topology::{Topology, node_id};
use crate::{Error, GrpcTransport};

/// What one replica of a replicated shard starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    pub shard: u32,
    /// This replica's raft node id.
    pub id: NodeId,
    /// Every replica of the shard in the topology, by node id.
    pub members: BTreeMap<NodeId, Member>,
    /// Where raft RPCs to each peer go: the topology's `raft_routes` of this
    /// replica, else the peer's gRPC address.
    pub routes: HashMap<NodeId, String>,
    /// The peers whose route the topology gives (not their gRPC address).
    pub routed: Vec<NodeId>,
    /// This replica forms the group if its raft database is new: the first
    /// replica of the shard.
    pub forms: bool,
}

/// The raft group of ingester `me`, or `None` when its shard has one replica.
///
/// The topology, not the membership stored in the raft log, says where a
/// peer listens now: `cluster up` picks new ports on every start, so the
/// addresses in the log are those of the first start. (A peer that is not
/// in the topology, added with `pharos admin`, is reached at its member
/// address.)
pub fn plan_group(topo: &Topology, me: &str) -> Result<Option<GroupPlan>, Error> {
    let bad = |msg: String| Error::InvalidTopology(msg);
    let shard = topo
        .shards
        .iter()
        .find(|s| s.replicas.iter().any(|r| r.id == me))
        .ok_or_else(|| bad(format!("ingester {me:?} is not in the topology")))?;
    if shard.replicas.len() < 2 {
        return Ok(None);
    }
    let id_of = |name: &str| node_id(name).ok_or_else(|| bad(format!("replica id {name:?} is not ingester-N")));
    let mut members = BTreeMap::new();
    for r in &shard.replicas {
        members.insert(id_of(&r.id)?, Member { name: r.id.clone(), grpc: r.grpc.clone().unwrap_or_default() });
    }
    let id = id_of(me)?;
    let mut routes: HashMap<NodeId, String> =
        members.iter().filter(|(n, _)| **n != id).map(|(n, m)| (*n, m.grpc.clone())).collect();
    let mut routed = Vec::new();
    for (peer, addr) in shard.replicas.iter().filter(|r| r.id == me).flat_map(|r| &r.raft_routes) {
        let n = node_id(peer).ok_or_else(|| bad(format!("raft route to {peer:?}: not ingester-N")))?;
        routes.insert(n, addr.clone());
        routed.push(n);
    }
    let forms = shard.replicas.first().is_some_and(|r| r.id == me);
    Ok(Some(GroupPlan { shard: shard.id, id, members, routes, routed, forms }))
}

/// Starts the raft replica of ingester `me` over `tsdb` if its shard is
/// replicated, with its raft state in `data_dir/raft`. `configure` sets the
/// options the topology does not decide (snapshot policy). The first
/// replica of a shard whose raft database is new forms the group.
pub async fn start_replica(
    topo: &Topology,
    me: &str,
    data_dir: &Path,
    tsdb: Arc<RocksStorage>,
    configure: impl FnOnce(&mut ReplicaOptions),
) -> Result<Option<Arc<Replica>>, Error> {
    let Some(plan) = plan_group(topo, me)? else { return Ok(None) };
    let member = plan.members.get(&plan.id).cloned().unwrap_or_default();
    let raft_dir = data_dir.join("raft");
    let mut opts = ReplicaOptions::new(plan.id, member, raft_dir.clone());
    configure(&mut opts);
    // Where the replicas listen now, to name the leader to clients and to
    // `pharos admin` (the membership holds the addresses of the first start).
    opts.addresses = plan.members.iter().map(|(n, m)| (*n, m.grpc.clone())).collect();
    if !plan.routed.is_empty() {
        let given: BTreeMap<_, _> = plan.routed.iter().map(|n| (*n, plan.routes.get(n))).collect();
        tracing::info!(routes = ?given, "raft RPCs to these peers go to the routes given, not their grpc addresses");
    }
    let replica = Replica::start(opts, tsdb, GrpcTransport::with_routes(plan.routes))
        .await
        .map_err(|e| Error::Internal(format!("cannot start the raft replica in {}: {e}", raft_dir.display())))?;
    if replica.is_fresh() && plan.forms {
        tracing::info!(shard = plan.shard, members = plan.members.len(), "forming the shard's raft group");
        replica
            .bootstrap(plan.members)
            .await
            .map_err(|e| Error::Internal(format!("cannot form the raft group: {e}")))?;
    }
    Ok(Some(replica))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn topo() -> Topology {
        let mut p = 0;
        let mut t = Topology::layout(2, 3, 1, 1, "g:1", || {
            p += 1;
            Ok::<_, Error>(format!("h:{p}"))
        })
        .unwrap();
        t.shards[0] = crate::topology::ShardTopology { id: 0, replicas: vec![t.shards[0].replicas[0].clone()] };
        t.set_raft_routes(BTreeMap::from([(
            "ingester-4".to_string(),
            BTreeMap::from([("ingester-3".to_string(), "proxy:1".to_string())]),
        )]))
        .unwrap();
        t
    }

    #[test]
    fn a_shard_of_one_replica_has_no_group() {
        assert_eq!(plan_group(&topo(), "ingester-0").unwrap(), None);
        assert!(plan_group(&topo(), "ingester-9").is_err());
    }

    #[test]
    fn members_routes_and_who_forms_the_group_come_from_the_topology() {
        let t = topo();
        let first = plan_group(&t, "ingester-3").unwrap().unwrap();
        assert_eq!((first.shard, first.id, first.forms), (1, 3, true));
        assert_eq!(first.members.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(first.members[&4].grpc, t.shards[1].replicas[1].grpc.clone().unwrap());
        assert_eq!(first.routes.len(), 2, "no route to itself");
        assert!(first.routed.is_empty());

        let second = plan_group(&t, "ingester-4").unwrap().unwrap();
        assert!(!second.forms);
        assert_eq!(second.routes[&3], "proxy:1");
        assert_eq!(second.routes[&5], t.shards[1].replicas[2].grpc.clone().unwrap());
        assert_eq!(second.routed, [3]);
    }
}
