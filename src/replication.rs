//! Wiring of a replicated shard's ingester: its raft replica over the TSDB
//! (snapshot policy from [`RaftArgs`], raft routes from the topology),
//! bootstrap of a new group, and the replica's own metrics.
//!
//! A shard with one replica has no raft group: its ingester writes straight
//! to the TSDB, as `pharos up` does (see docs/architecture.md, Decisions).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use pharos_api::Metrics;
use pharos_raft::{Member, Replica, ReplicaOptions};
use pharos_tsdb::RocksStorage;

use crate::AdminCommand;
use crate::topology::{Topology, node_id};

/// Raft settings of a replicated shard's ingesters.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct RaftArgs {
    /// Snapshot the TSDB (a RocksDB checkpoint) every this many raft log
    /// entries, and purge the log up to the snapshot; 0 never does either.
    #[arg(long, default_value_t = 1_000)]
    pub raft_snapshot_every: u64,
    /// Entries already in a snapshot that the purged log still keeps, so a
    /// follower only a little behind catches up from the log.
    #[arg(long, default_value_t = 1_000)]
    pub raft_log_keep: u64,
}

impl RaftArgs {
    /// The same settings as command-line arguments, for a child process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--raft-snapshot-every".into(),
            self.raft_snapshot_every.to_string(),
            "--raft-log-keep".into(),
            self.raft_log_keep.to_string(),
        ]
    }
}

/// Starts the raft replica of ingester `me` if its shard is replicated.
/// The first replica of a shard whose raft database is new forms the group.
pub async fn start_replica(
    topo: &Topology,
    me: &str,
    data_dir: &Path,
    tsdb: Arc<RocksStorage>,
    raft: &RaftArgs,
) -> anyhow::Result<Option<Arc<Replica>>> {
    let shard = topo
        .shards
        .iter()
        .find(|s| s.replicas.iter().any(|r| r.id == me))
        .with_context(|| format!("ingester {me:?} is not in the topology"))?;
    if shard.replicas.len() < 2 {
        return Ok(None);
    }
    let mut members = BTreeMap::new();
    for r in &shard.replicas {
        let id = node_id(&r.id).with_context(|| format!("replica id {:?} is not ingester-N", r.id))?;
        members.insert(id, Member { name: r.id.clone(), grpc: r.grpc.clone().unwrap_or_default() });
    }
    let id = node_id(me).with_context(|| format!("replica id {me:?} is not ingester-N"))?;
    let member = members.get(&id).cloned().unwrap_or_default();
    let mut opts = ReplicaOptions::new(id, member, data_dir.join("raft"));
    opts.snapshot_every = raft.raft_snapshot_every;
    opts.log_keep = raft.raft_log_keep;
    // Where the replicas listen now, to name the leader to clients and to
    // `pharos admin` (the membership holds the addresses of the first start).
    opts.addresses = members.iter().map(|(n, m)| (*n, m.grpc.clone())).collect();
    // The topology, not the membership stored in the raft log, says where a
    // peer listens now: `cluster up` picks new ports on every start, so the
    // addresses in the log are those of the first start. A peer that is not
    // in the topology (added with `pharos admin`) is reached at its member
    // address.
    let mut routes: HashMap<u64, String> =
        members.iter().filter(|(n, _)| **n != id).map(|(n, m)| (*n, m.grpc.clone())).collect();
    let mut given = HashMap::new();
    for (peer, addr) in shard.replicas.iter().filter(|r| r.id == me).flat_map(|r| &r.raft_routes) {
        let n = node_id(peer).with_context(|| format!("raft route to {peer:?}: not ingester-N"))?;
        given.insert(n, addr.clone());
    }
    if !given.is_empty() {
        tracing::info!(routes = ?given, "raft RPCs to these peers go to the routes given, not their grpc addresses");
    }
    routes.extend(given);
    let replica = Replica::start(opts, tsdb, pharos_cluster::GrpcTransport::with_routes(routes))
        .await
        .with_context(|| format!("cannot start the raft replica in {}", data_dir.join("raft").display()))?;
    if replica.is_fresh() && shard.replicas.first().is_some_and(|r| r.id == me) {
        tracing::info!(shard = shard.id, members = members.len(), "forming the shard's raft group");
        replica.bootstrap(members).await.context("cannot form the raft group")?;
    }
    Ok(Some(replica))
}

/// The replica's raft figures on `/metrics`.
pub fn register_raft_metrics(metrics: &Metrics, replica: Arc<Replica>) {
    metrics.register(move |e| {
        let st = replica.status();
        let index = |i: Option<u64>| i.unwrap_or(0) as f64;
        let gauges = [
            ("pharos_raft_term", "Current raft term of this replica.", st.term as f64),
            (
                "pharos_raft_is_leader",
                "1 if this replica leads its shard's raft group.",
                if st.state == "leader" { 1.0 } else { 0.0 },
            ),
            ("pharos_raft_commit_index", "Newest raft log index known committed.", st.commit_index as f64),
            ("pharos_raft_applied_index", "Newest raft log index applied to the TSDB.", index(st.applied_index)),
            ("pharos_raft_last_log_index", "Newest raft log index stored by this replica.", index(st.last_log_index)),
            (
                "pharos_raft_snapshot_index",
                "Last raft log index in this replica's current snapshot.",
                index(st.snapshot_index),
            ),
            ("pharos_raft_purged_index", "Raft log entries up to this index are purged here.", index(st.purged_index)),
            (
                "pharos_raft_last_snapshot_install_seconds",
                "How long the newest snapshot install took (unpack and TSDB restore).",
                st.last_snapshot_install_ms as f64 / 1000.0,
            ),
            (
                "pharos_raft_max_follower_lag_entries",
                "On the leader: entries the slowest follower is behind.",
                st.lag.values().copied().max().unwrap_or(0) as f64,
            ),
        ];
        for (name, help, value) in gauges {
            e.gauge(name, help, value);
        }
        e.counter("pharos_raft_snapshots_built_total", "Snapshots this replica built.", st.snapshots_built as f64);
        e.counter(
            "pharos_raft_snapshots_installed_total",
            "Snapshots received from the leader and installed into the TSDB.",
            st.snapshots_installed as f64,
        );
    });
}

/// The leader's gRPC address, asked of any replica `via`: where the leader
/// listens now as `via` knows it from its topology, not the address in the
/// raft membership (that of the leader's first start).
async fn leader_of(via: &str) -> anyhow::Result<String> {
    let st = pharos_cluster::replica_status(via, std::time::Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot ask {via} for its raft status"))?;
    let leader = st.leader.with_context(|| format!("{via} knows no leader of its shard"))?;
    st.leader_addr.with_context(|| format!("{via} knows no address of leader {leader}"))
}

/// `pharos admin ...`: membership changes through the shard's leader.
pub async fn admin(c: AdminCommand) -> anyhow::Result<()> {
    let st = match c {
        AdminCommand::AddReplica { via, id, grpc } => {
            let n = node_id(&id).with_context(|| format!("{id:?} is not ingester-N"))?;
            let leader = leader_of(&via).await?;
            pharos_cluster::add_replica(&leader, n, Member { name: id, grpc }).await?
        }
        AdminCommand::RemoveReplica { via, id } => {
            let n = node_id(&id).with_context(|| format!("{id:?} is not ingester-N"))?;
            let leader = leader_of(&via).await?;
            pharos_cluster::remove_replica(&leader, n).await?
        }
        AdminCommand::ReplicaStatus { grpc } => {
            pharos_cluster::replica_status(&grpc, std::time::Duration::from_secs(5)).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&st)?);
    Ok(())
}
