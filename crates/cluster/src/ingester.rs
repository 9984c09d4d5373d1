//! The ingester's gRPC service over its TSDB.
//!
//! In a replicated shard the service holds the shard's raft [`Replica`]:
//! writes go through raft (committed by a quorum, then applied), and every
//! read first passes the replica's read barrier, so it answers with every
//! acknowledged write. A read in leader mode (the default) is answered by
//! the leader only, followers answer "not leader" (see
//! [`crate::Error::NotLeader`]); a read in follower mode (see
//! [`crate::ReadReplica`]) by any replica that gets the leader's read index
//! and applied it.
//!
//! Writes arrive as unary `Write` calls or, from the distributor, on
//! long-lived `WriteStream`s (`write_stream.rs`); both take the same path.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_server::{Ingester, IngesterServer};
use pharos_raft::Replica;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::*;
use crate::{Error, LocalShard, MAX_MESSAGE_BYTES, ReadReplica, Shard};

/// Series per streamed Select message.
const SELECT_BATCH: usize = 256;

pub struct IngesterService {
    shard: LocalShard,
    replica: Option<Arc<Replica>>,
    /// Turns true when the server shuts down: its write streams end.
    closing: watch::Sender<bool>,
}

/// Where a write goes: through raft on a replicated shard, else to the TSDB.
#[derive(Clone)]
struct Writer {
    shard: LocalShard,
    replica: Option<Arc<Replica>>,
}

impl Writer {
    async fn write(self, req: pb::WriteRequest) -> Result<pb::WriteResponse, Error> {
        let batch: Vec<_> = req.series.into_iter().map(series_from_proto).collect();
        let positions = BatchPositions::of(&batch);
        let res = match &self.replica {
            Some(r) => r.write(&req.tenant, batch).await.map_err(|e| Error::from_raft(r.id(), e))?,
            None => self.shard.append(&req.tenant, batch).await?,
        };
        positions.response(res)
    }
}

impl IngesterService {
    /// `replica`: the shard's raft replica when the shard is replicated.
    pub fn new(shard: LocalShard, replica: Option<Arc<Replica>>) -> Self {
        Self { shard, replica, closing: watch::channel(false).0 }
    }

    /// Ends every open write stream (at shutdown: a server waits for its
    /// streams to end, and a client keeps a write stream open for good).
    /// Writers still waiting on them fail over or retry.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    fn writer(&self) -> Writer {
        Writer { shard: self.shard.clone(), replica: self.replica.clone() }
    }

    /// Before a read: on a replicated shard, the leader's ReadIndex check,
    /// or in follower mode the follower read barrier.
    async fn barrier(&self, meta: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        if let Some(r) = &self.replica {
            match ReadReplica::of_request(meta) {
                ReadReplica::Leader => r.read_barrier().await,
                ReadReplica::Follower => r.follower_read_barrier().await,
            }
            .map_err(|e| Error::from_raft(r.id(), e))?;
        }
        Ok(())
    }
}

type SelectStream = Pin<Box<dyn Stream<Item = Result<pb::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingester for IngesterService {
    async fn write(&self, req: Request<pb::WriteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        Ok(Response::new(self.writer().write(req.into_inner()).await?))
    }

    type WriteStreamStream = crate::write_stream::Answers;

    async fn write_stream(
        &self,
        req: Request<Streaming<pb::WriteStreamRequest>>,
    ) -> Result<Response<Self::WriteStreamStream>, Status> {
        let writer = self.writer();
        let answers =
            crate::write_stream::serve(req.into_inner(), self.closing.subscribe(), move |w| writer.clone().write(w));
        Ok(Response::new(answers))
    }

    type SelectStream = SelectStream;

    async fn select(&self, req: Request<pb::SelectRequest>) -> Result<Response<SelectStream>, Status> {
        let (meta, _, req) = req.into_parts();
        let matchers = matchers_from_proto(&req.matchers)?;
        self.barrier(&meta).await?;
        let series = self.shard.select(&req.tenant, &matchers, req.start_ms, req.end_ms).await?;
        let msgs: Vec<Result<pb::SelectResponse, Status>> = series
            .chunks(SELECT_BATCH)
            .map(|part| {
                Ok(pb::SelectResponse { series: part.iter().map(|s| series_to_proto(&s.labels, &s.samples)).collect() })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(msgs))))
    }

    async fn label_names(&self, req: Request<pb::LabelsRequest>) -> Result<Response<pb::LabelsResponse>, Status> {
        let (meta, _, req) = req.into_parts();
        let matchers = matchers_from_proto(&req.matchers)?;
        self.barrier(&meta).await?;
        let values =
            self.shard.label_names(&req.tenant, &meta_query(matchers, req.start_ms, req.end_ms, req.limit)).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn label_values(&self, req: Request<pb::LabelsRequest>) -> Result<Response<pb::LabelsResponse>, Status> {
        let (meta, _, req) = req.into_parts();
        let matchers = matchers_from_proto(&req.matchers)?;
        self.barrier(&meta).await?;
        let q = meta_query(matchers, req.start_ms, req.end_ms, req.limit);
        let values = self.shard.label_values(&req.tenant, &req.name, &q).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn series(&self, req: Request<pb::SelectRequest>) -> Result<Response<pb::SeriesResponse>, Status> {
        let (meta, _, req) = req.into_parts();
        let matchers = matchers_from_proto(&req.matchers)?;
        self.barrier(&meta).await?;
        let series = self.shard.series(&req.tenant, &meta_query(matchers, req.start_ms, req.end_ms, req.limit)).await?;
        Ok(Response::new(pb::SeriesResponse { series: series.iter().map(|l| series_to_proto(l, &[])).collect() }))
    }

    async fn eval(&self, req: Request<pb::EvalRequest>) -> Result<Response<pb::EvalResponse>, Status> {
        let (meta, _, req) = req.into_parts();
        let (tenant, req) = crate::pushdown::request_from_proto(req);
        self.barrier(&meta).await?;
        let partial = self.shard.eval(&tenant, &req).await?;
        Ok(Response::new(pb::EvalResponse {
            series: partial.series.iter().map(|s| series_to_proto(&s.labels, &s.samples)).collect(),
            annotations: crate::pushdown::annotations_to_proto(&partial.annotations),
        }))
    }

    async fn flush(&self, _: Request<pb::FlushRequest>) -> Result<Response<pb::FlushResponse>, Status> {
        self.shard.flush().await?;
        Ok(Response::new(pb::FlushResponse {}))
    }
}

/// Accepted connections with Nagle's algorithm off: small answers leave at once
/// instead of waiting for the peer's delayed ACK (40 ms per call otherwise).
fn incoming_nodelay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    })
}

/// Serves the ingester service (and the raft service of `replica`) on an
/// already-bound listener until `shutdown` resolves.
pub async fn serve_ingester(
    listener: tokio::net::TcpListener,
    shard: LocalShard,
    replica: Option<Arc<Replica>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let raft = replica.clone().map(crate::RaftService::server);
    let service = Arc::new(IngesterService::new(shard, replica));
    let svc = IngesterServer::from_arc(service.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tracing::info!(?addr, "ingester gRPC serving");
    tonic::transport::Server::builder()
        .add_service(svc)
        .add_optional_service(raft)
        .serve_with_incoming_shutdown(incoming_nodelay(listener), async move {
            shutdown.await;
            service.close_streams();
        })
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}
