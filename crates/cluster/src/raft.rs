//! Raft over gRPC: the `pharos.v1.Raft` service an ingester of a replicated
//! shard serves ([`RaftService`]), the transport its replica sends raft
//! RPCs through ([`GrpcTransport`]), and the client calls of the admin
//! tools and the status page ([`replica_status`], [`add_replica`],
//! [`remove_replica`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::raft_client::RaftClient;
use pharos_proto::pharos::v1::raft_server::{Raft, RaftServer};
use pharos_raft::{Member, NodeId, Replica, ReplicaStatus, RpcKind};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::{Error, MAX_MESSAGE_BYTES};

/// Serves raft RPCs and administration for one replica.
pub struct RaftService {
    replica: Arc<Replica>,
}

impl RaftService {
    pub fn new(replica: Arc<Replica>) -> Self {
        Self { replica }
    }

    pub fn server(replica: Arc<Replica>) -> RaftServer<Self> {
        RaftServer::new(Self::new(replica))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn rpc(&self, kind: RpcKind, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        let data = pharos_raft::handle_rpc(self.replica.raft(), kind, &req.into_inner().data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::RaftMessage { data }))
    }

    fn error(&self, e: pharos_raft::Error) -> Error {
        Error::from_raft(self.replica.id(), e)
    }

    fn status_response(&self) -> Result<Response<pb::StatusResponse>, Status> {
        let json = serde_json::to_string(&self.replica.status()).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::StatusResponse { json }))
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        self.rpc(RpcKind::AppendEntries, req).await
    }

    async fn vote(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        self.rpc(RpcKind::Vote, req).await
    }

    async fn install_snapshot(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        self.rpc(RpcKind::InstallSnapshot, req).await
    }

    async fn read_index(&self, req: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        self.rpc(RpcKind::ReadIndex, req).await
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.status_response()
    }

    async fn add_replica(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let r = req.into_inner();
        tracing::info!(id = r.id, name = %r.name, grpc = %r.grpc, "adding replica");
        self.replica.add_replica(r.id, Member { name: r.name, grpc: r.grpc }).await.map_err(|e| self.error(e))?;
        self.status_response()
    }

    async fn remove_replica(&self, req: Request<pb::MemberRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let r = req.into_inner();
        tracing::info!(id = r.id, "removing replica");
        self.replica.remove_replica(r.id).await.map_err(|e| self.error(e))?;
        self.status_response()
    }
}

fn raft_client(addr: &str) -> Result<RaftClient<Channel>, Error> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::BadRequest(format!("bad replica address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    Ok(RaftClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Sends raft RPCs to peers over gRPC, one lazily connected channel per peer.
#[derive(Default)]
pub struct GrpcTransport {
    clients: Mutex<HashMap<String, RaftClient<Channel>>>,
    /// Peers reached at another address than their member `grpc` one.
    routes: HashMap<NodeId, String>,
}

impl GrpcTransport {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sends the raft RPCs for the peers in `routes` to the address given
    /// there (a proxy, a NAT) instead of their member `grpc` address.
    pub fn with_routes(routes: HashMap<NodeId, String>) -> Arc<Self> {
        Arc::new(Self { routes, ..Self::default() })
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, pharos_raft::Error> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = raft_client(addr).map_err(|e| pharos_raft::Error::Network(e.to_string()))?;
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

#[tonic::async_trait]
impl pharos_raft::Transport for GrpcTransport {
    async fn call(
        &self,
        target: NodeId,
        member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, pharos_raft::Error> {
        let addr = self.routes.get(&target).unwrap_or(&member.grpc);
        let mut client = self.client(addr)?;
        let mut req = Request::new(pb::RaftMessage { data: body });
        req.set_timeout(timeout);
        let res = match kind {
            RpcKind::AppendEntries => client.append_entries(req).await,
            RpcKind::Vote => client.vote(req).await,
            RpcKind::InstallSnapshot => client.install_snapshot(req).await,
            RpcKind::ReadIndex => client.read_index(req).await,
        };
        match res {
            Ok(r) => Ok(r.into_inner().data),
            Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                Err(pharos_raft::Error::Unreachable(format!("{addr}: {}", s.message())))
            }
            Err(s) => Err(pharos_raft::Error::Network(format!("{addr}: {}", s.message()))),
        }
    }
}

fn parse_status(json: &str) -> Result<ReplicaStatus, Error> {
    serde_json::from_str(json).map_err(|e| Error::Internal(format!("replica status: {e}")))
}

/// A replica's raft view, asked over gRPC at `addr` (its gRPC address).
pub async fn replica_status(addr: &str, timeout: Duration) -> Result<ReplicaStatus, Error> {
    let mut req = Request::new(pb::StatusRequest {});
    req.set_timeout(timeout);
    let resp = raft_client(addr)?.status(req).await.map_err(|s| Error::from_replica_status(addr, s))?;
    parse_status(&resp.into_inner().json)
}

/// Asks the leader at `leader_addr` to add a replica (learner, catch up, voter).
pub async fn add_replica(leader_addr: &str, id: NodeId, member: Member) -> Result<ReplicaStatus, Error> {
    let req = pb::MemberRequest { id, name: member.name, grpc: member.grpc };
    let resp =
        raft_client(leader_addr)?.add_replica(req).await.map_err(|s| Error::from_replica_status(leader_addr, s))?;
    parse_status(&resp.into_inner().json)
}

/// Asks the leader at `leader_addr` to remove a replica from the group.
pub async fn remove_replica(leader_addr: &str, id: NodeId) -> Result<ReplicaStatus, Error> {
    let req = pb::MemberRequest { id, name: String::new(), grpc: String::new() };
    let resp =
        raft_client(leader_addr)?.remove_replica(req).await.map_err(|s| Error::from_replica_status(leader_addr, s))?;
    parse_status(&resp.into_inner().json)
}
