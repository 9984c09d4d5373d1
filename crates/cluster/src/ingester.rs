//! The ingester's gRPC service over its TSDB.

use std::net::SocketAddr;
use std::pin::Pin;

use futures::Stream;
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_server::{Ingester, IngesterServer};
use tonic::{Request, Response, Status};

use crate::convert::*;
use crate::{Error, LocalShard, MAX_MESSAGE_BYTES, Shard};

/// Series per streamed Select message.
const SELECT_BATCH: usize = 256;

pub struct IngesterService {
    shard: LocalShard,
}

impl IngesterService {
    pub fn new(shard: LocalShard) -> Self {
        Self { shard }
    }
}

type SelectStream = Pin<Box<dyn Stream<Item = Result<pb::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingester for IngesterService {
    async fn write(&self, req: Request<pb::WriteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let batch = req.series.into_iter().map(series_from_proto).collect();
        let res = self.shard.append(&req.tenant, batch).await?;
        Ok(Response::new(pb::WriteResponse {
            accepted: res.accepted,
            rejected: res
                .rejected
                .into_iter()
                .map(|r| pb::Rejection {
                    series: r.labels.to_string(),
                    reason: r.reason.as_str().to_string(),
                    count: r.count,
                    first_timestamp: r.first_t,
                })
                .collect(),
        }))
    }

    type SelectStream = SelectStream;

    async fn select(&self, req: Request<pb::SelectRequest>) -> Result<Response<SelectStream>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
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
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let values = self.shard.labels(&req.tenant, None, &matchers).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn label_values(&self, req: Request<pb::LabelsRequest>) -> Result<Response<pb::LabelsResponse>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let values = self.shard.labels(&req.tenant, Some(&req.name), &matchers).await?;
        Ok(Response::new(pb::LabelsResponse { values }))
    }

    async fn series(&self, req: Request<pb::SelectRequest>) -> Result<Response<pb::SeriesResponse>, Status> {
        let req = req.into_inner();
        let matchers = matchers_from_proto(&req.matchers)?;
        let series = self.shard.series(&req.tenant, &matchers).await?;
        Ok(Response::new(pb::SeriesResponse { series: series.iter().map(|l| series_to_proto(l, &[])).collect() }))
    }

    async fn flush(&self, _: Request<pb::FlushRequest>) -> Result<Response<pb::FlushResponse>, Status> {
        self.shard.flush().await?;
        Ok(Response::new(pb::FlushResponse {}))
    }
}

/// Serves the ingester service on an already-bound listener until `shutdown` resolves.
pub async fn serve_ingester(
    listener: tokio::net::TcpListener,
    shard: LocalShard,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let svc = IngesterServer::new(IngesterService::new(shard))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tracing::info!(?addr, "ingester gRPC serving");
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}
