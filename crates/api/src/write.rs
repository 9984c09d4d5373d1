//! Prometheus remote_write 1.0 and the admin flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pharos_cluster::{Cluster, series_from_proto};
use pharos_proto::prometheus::WriteRequest;
use prost::Message;

use crate::{ApiError, Metrics, tenant_of};

#[derive(Clone)]
pub struct WriteState {
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Metrics>,
}

/// Rejections listed in one error answer; the rest are counted.
const MAX_LISTED: usize = 10;

/// Decodes a remote_write body (snappy block format, then protobuf).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy decode of the remote_write body failed: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf decode of the remote_write body failed: {e}"))
}

fn plain(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

/// `POST /api/v1/write`: 204 once every sample is stored; 400 naming the
/// problem for a malformed body or for samples the TSDB rejected (the
/// others in the request are stored, as Prometheus does).
pub async fn remote_write(State(st): State<WriteState>, headers: HeaderMap, body: Bytes) -> Response {
    st.metrics.http_requests.inc("/api/v1/write");
    let tenant = match tenant_of(&headers) {
        Ok(t) => t,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.message),
    };
    let req = match decode(&body) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let batch: Vec<_> = req.timeseries.into_iter().map(series_from_proto).collect();
    let res = match st.cluster.append(&tenant, batch).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "remote_write failed");
            let e = ApiError::from(e);
            return plain(e.status, e.message);
        }
    };
    let rejected: u64 = res.rejected.iter().map(|r| r.count).sum();
    st.metrics.remote_write_samples.fetch_add(res.accepted, Ordering::Relaxed);
    st.metrics.remote_write_rejected.fetch_add(rejected, Ordering::Relaxed);
    if res.rejected.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut msg = format!("{rejected} sample(s) rejected, {} accepted:\n", res.accepted);
    for r in res.rejected.iter().take(MAX_LISTED) {
        msg.push_str(&format!("{r}\n"));
    }
    if res.rejected.len() > MAX_LISTED {
        msg.push_str(&format!("... and {} more series\n", res.rejected.len() - MAX_LISTED));
    }
    plain(StatusCode::BAD_REQUEST, msg)
}

/// `POST /api/v1/admin/flush`: every shard writes its head to disk.
pub async fn flush(State(st): State<WriteState>) -> Result<impl IntoResponse, ApiError> {
    st.metrics.http_requests.inc("/api/v1/admin/flush");
    st.cluster.flush().await?;
    Ok(StatusCode::NO_CONTENT)
}
