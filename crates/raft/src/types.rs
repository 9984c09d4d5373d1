//! The openraft type configuration of a shard's raft group.

use pharos_storage::{AppendResult, RejectReason, Rejection, SeriesSamples};
use serde::{Deserialize, Serialize};

/// A replica's raft id: the number of its `ingester-N` id, unique in the cluster.
pub type NodeId = u64;

/// A replica as raft's membership records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The id in the topology and `cluster.json`, e.g. `ingester-4`.
    pub name: String,
    /// `host:port` of its gRPC server (raft and ingester services).
    pub grpc: String,
}

/// One client batch: one tenant's series samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    pub tenant: String,
    pub series: Vec<(pharos_model::Labels, Vec<pharos_model::Sample>)>,
}

impl Write {
    pub fn new(tenant: &str, batch: Vec<SeriesSamples>) -> Self {
        Self { tenant: tenant.to_string(), series: batch.into_iter().map(|s| (s.labels, s.samples)).collect() }
    }

    pub fn samples(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }

    pub fn to_batch(&self) -> Vec<SeriesSamples> {
        self.series.iter().map(|(l, s)| SeriesSamples { labels: l.clone(), samples: s.clone() }).collect()
    }
}

/// A raft log entry's payload: the client batches coalesced into it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub writes: Vec<Write>,
}

/// What applying one [`Write`] did (an [`AppendResult`] in serializable form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    /// (labels, reason as [`RejectReason::as_str`], count, first timestamp)
    pub rejected: Vec<(pharos_model::Labels, String, u64, i64)>,
}

impl From<AppendResult> for WriteOutcome {
    fn from(r: AppendResult) -> Self {
        Self {
            accepted: r.accepted,
            duplicates: r.duplicates,
            rejected: r
                .rejected
                .into_iter()
                .map(|x| (x.labels, x.reason.as_str().to_string(), x.count, x.first_t))
                .collect(),
        }
    }
}

impl From<WriteOutcome> for AppendResult {
    fn from(o: WriteOutcome) -> Self {
        AppendResult {
            accepted: o.accepted,
            duplicates: o.duplicates,
            rejected: o
                .rejected
                .into_iter()
                .map(|(labels, reason, count, first_t)| Rejection {
                    labels,
                    reason: RejectReason::parse(&reason).unwrap_or(RejectReason::OutOfOrder),
                    count,
                    first_t,
                })
                .collect(),
        }
    }
}

/// The answer to applying one entry: one outcome per write, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub outcomes: Vec<WriteOutcome>,
}

openraft::declare_raft_types!(
    /// A shard's raft group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot::SnapshotData,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Raft = openraft::Raft<TypeConfig>;
