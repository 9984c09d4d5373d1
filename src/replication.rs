//! The command line of replication: a replica's raft flags ([`RaftArgs`])
//! and `pharos admin`. Group formation is `pharos_cluster::start_replica`.

use anyhow::Context;
use pharos_cluster::node_id;
use pharos_raft::{Member, ReplicaOptions};

use crate::AdminCommand;

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

    /// Sets a replica's snapshot policy.
    pub fn apply(&self, opts: &mut ReplicaOptions) {
        opts.snapshot_every = self.raft_snapshot_every;
        opts.log_keep = self.raft_log_keep;
    }
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
