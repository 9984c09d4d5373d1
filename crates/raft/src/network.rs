//! openraft's network over a byte-carrying [`Transport`].
//!
//! Each raft RPC (AppendEntries, Vote, InstallSnapshot chunk) travels as the
//! bincode encoding of openraft's request, except a snapshot chunk's bytes,
//! which follow its bincode'd header raw ([`encode_chunk`]: serde would
//! carry them one by one, which made snapshots crawl); the answer is the bincode encoding
//! of `Result<response, error>` (the error is `Fatal` for AppendEntries and
//! Vote, `RaftError<InstallSnapshotError>` for a snapshot chunk), so a remote
//! raft error arrives as one.
//! [`handle_rpc`] is the receiving side, shared by every transport: the gRPC
//! one in `pharos-cluster` and the in-process one of [`crate::testing`].
//!
//! Besides openraft's RPCs, a follower asks the leader for a read index
//! ([`RpcKind::ReadIndex`], [`request_read_index`]) to serve a linearizable
//! read itself: the request is empty, the answer the bincode encoding of
//! `Result<Option<u64>, ReadIndexRefused>`.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, Fatal, Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::types::{Member, NodeId, Raft, TypeConfig};

/// Which raft RPC a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// A follower asks the leader for the index a linearizable read must
    /// wait for (the leader confirms its lead with a quorum first).
    ReadIndex,
}

/// Why a leader gave no read index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadIndexRefused {
    /// The node asked does not lead; it knows of this leader.
    NotLeader(Option<NodeId>),
    /// No quorum confirmed the lead in time, or raft stopped.
    Failed(String),
}

/// How long a leader tries to confirm its lead for a read index.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

/// Carries one serialized raft RPC to `target` and brings back the answer.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn call(
        &self,
        target: NodeId,
        member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error>;
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    bincode::serialize(v).map_err(|e| Error::Raft(format!("encode: {e}")))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    bincode::deserialize(b).map_err(|e| Error::Raft(format!("decode: {e}")))
}

/// A snapshot chunk on the wire: the length of its header (u64, big
/// endian), the header (the bincode'd request with empty `data`), then the
/// data as it is.
pub fn encode_chunk(req: InstallSnapshotRequest<TypeConfig>) -> Result<Vec<u8>, Error> {
    let InstallSnapshotRequest { vote, meta, offset, data, done } = req;
    let head = encode(&InstallSnapshotRequest::<TypeConfig> { vote, meta, offset, data: Vec::new(), done })?;
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

/// The request [`encode_chunk`] made `body` of.
pub fn decode_chunk(body: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, Error> {
    let bad = || Error::Raft("decode: a truncated snapshot chunk".into());
    let (len, rest) = body.split_first_chunk::<8>().ok_or_else(bad)?;
    let len = usize::try_from(u64::from_be_bytes(*len)).map_err(|_| bad())?;
    if rest.len() < len {
        return Err(bad());
    }
    let (head, data) = rest.split_at(len);
    let mut req: InstallSnapshotRequest<TypeConfig> = decode(head)?;
    req.data = data.to_vec();
    Ok(req)
}

/// Serves one raft RPC received from a peer: decodes it, hands it to the
/// local raft node and encodes its answer.
pub async fn handle_rpc(raft: &Raft, kind: RpcKind, body: &[u8]) -> Result<Vec<u8>, Error> {
    match kind {
        RpcKind::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> = decode(body)?;
            encode(&raft.append_entries(req).await.map_err(fatal))
        }
        RpcKind::Vote => {
            let req: VoteRequest<NodeId> = decode(body)?;
            encode(&raft.vote(req).await.map_err(fatal))
        }
        RpcKind::InstallSnapshot => {
            let req = decode_chunk(body)?;
            encode(&raft.install_snapshot(req).await)
        }
        RpcKind::ReadIndex => encode(&read_index(raft).await),
    }
}

/// The leader's side of [`RpcKind::ReadIndex`]: openraft's ReadIndex check
/// (heartbeats confirmed by a quorum), without waiting for the leader's own
/// apply: the follower that asked waits for its own. `None` while nothing
/// was ever committed.
async fn read_index(raft: &Raft) -> Result<Option<u64>, ReadIndexRefused> {
    match tokio::time::timeout(READ_INDEX_TIMEOUT, raft.get_read_log_id()).await {
        Err(_) => Err(ReadIndexRefused::Failed("leadership not confirmed by a quorum in time".into())),
        Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index)),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            Err(ReadIndexRefused::NotLeader(f.leader_id))
        }
        Ok(Err(e)) => Err(ReadIndexRefused::Failed(e.to_string())),
    }
}

/// Asks the leader `target` for its read index over `transport` (see
/// [`RpcKind::ReadIndex`]).
pub async fn request_read_index(
    transport: &dyn Transport,
    target: NodeId,
    member: &Member,
    timeout: Duration,
) -> Result<Option<u64>, Error> {
    let answer = transport.call(target, member, RpcKind::ReadIndex, Vec::new(), timeout).await?;
    match decode::<Result<Option<u64>, ReadIndexRefused>>(&answer)? {
        Ok(index) => Ok(index),
        Err(ReadIndexRefused::NotLeader(leader)) => {
            Err(Error::Raft(format!("node {target} no longer leads (leader: {leader:?}); no read index")))
        }
        Err(ReadIndexRefused::Failed(why)) => Err(Error::Raft(format!("no read index from leader {target}: {why}"))),
    }
}

/// The only error a raft RPC without an API error can give: raft stopped.
/// (openraft's `Infallible` has no variants.)
fn fatal(e: RaftError<NodeId>) -> Fatal<NodeId> {
    match e {
        RaftError::Fatal(f) => f,
        RaftError::APIError(never) => match never {},
    }
}

/// Makes a [`PeerClient`] per peer over one shared transport.
#[derive(Clone)]
pub struct NetworkFactory {
    pub transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient { transport: self.transport.clone(), target, member: node.clone() }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    transport: Arc<dyn Transport>,
    target: NodeId,
    member: Member,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerClient {
    /// Sends the request encoded as `body`; the answer is `Result<Resp, W>`
    /// on the wire, and a `W` becomes the remote raft error `into`.
    async fn rpc<Resp: DeserializeOwned, W: DeserializeOwned, E: std::error::Error>(
        &self,
        kind: RpcKind,
        body: Result<Vec<u8>, Error>,
        option: &RPCOption,
        into: impl FnOnce(W) -> RaftError<NodeId, E>,
    ) -> RpcResult<Resp, E> {
        let body = body.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = self.transport.call(self.target, &self.member, kind, body, option.hard_ttl()).await.map_err(
            |e| match e {
                Error::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            },
        )?;
        let res: Result<Resp, W> = decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, into(e))))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// After an unreachable peer, try again soon: a restarted replica should
    /// rejoin within a heartbeat or two, not openraft's default 500 ms.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.rpc(RpcKind::AppendEntries, encode(&rpc), &option, RaftError::Fatal).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let body = encode_chunk(rpc);
        self.rpc(RpcKind::InstallSnapshot, body, &option, |e: RaftError<NodeId, InstallSnapshotError>| e).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.rpc(RpcKind::Vote, encode(&rpc), &option, RaftError::Fatal).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};

    use super::*;

    #[test]
    fn a_snapshot_chunk_round_trips_with_its_bytes_raw() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 77)),
            last_membership: Default::default(),
            snapshot_id: "77-1".into(),
        };
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: meta.clone(),
            offset: 3 << 20,
            data: data.clone(),
            done: true,
        };
        let body = encode_chunk(req).unwrap();
        assert_eq!(&body[body.len() - data.len()..], &data[..], "the bytes travel as they are");
        let back = decode_chunk(&body).unwrap();
        assert_eq!((back.vote, back.meta, back.offset, back.done), (Vote::new_committed(2, 1), meta, 3 << 20, true));
        assert_eq!(back.data, data);
        assert!(decode_chunk(&body[..4]).is_err());
        assert!(decode_chunk(&body[..20]).is_err());
    }
}
