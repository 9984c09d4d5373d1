//! openraft's network over a byte-carrying [`Transport`].
//!
//! Each raft RPC (AppendEntries, Vote, InstallSnapshot chunk) travels as the
//! bincode encoding of openraft's request; the answer is the bincode encoding
//! of `Result<response, error>` (the error is `Fatal` for AppendEntries and
//! Vote, `RaftError<InstallSnapshotError>` for a snapshot chunk), so a remote
//! raft error arrives as one.
//! [`handle_rpc`] is the receiving side, shared by every transport: the gRPC
//! one in `pharos-cluster` and the in-process one of [`crate::testing`].

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::types::{Member, NodeId, Raft, TypeConfig};

/// Which raft RPC a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

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
            let req: InstallSnapshotRequest<TypeConfig> = decode(body)?;
            encode(&raft.install_snapshot(req).await)
        }
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
    /// Sends `req`; the answer is `Result<Resp, W>` on the wire, and a `W`
    /// becomes the remote raft error `into`.
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, W: DeserializeOwned, E: std::error::Error>(
        &self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
        into: impl FnOnce(W) -> RaftError<NodeId, E>,
    ) -> RpcResult<Resp, E> {
        let body = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
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
        self.rpc(RpcKind::AppendEntries, &rpc, &option, RaftError::Fatal).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(RpcKind::InstallSnapshot, &rpc, &option, |e: RaftError<NodeId, InstallSnapshotError>| e).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.rpc(RpcKind::Vote, &rpc, &option, RaftError::Fatal).await
    }
}
