//! The one error type of the replication layer.

use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This replica is not the leader; `leader` is the one it knows of.
    #[error("not the leader of this shard (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<NodeId>, leader_addr: Option<String> },
    #[error(transparent)]
    Storage(#[from] pharos_storage::Error),
    #[error("raft storage: {0}")]
    RaftStorage(String),
    #[error("raft: {0}")]
    Raft(String),
    /// A peer could not be reached (connection refused, timed out): raft
    /// backs off before trying it again.
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("network: {0}")]
    Network(String),
    #[error("replica is shutting down")]
    Stopped,
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::RaftStorage(e.to_string())
    }
}
