//! Prometheus remote_write 1.0 (decoded within [`crate::ingest`]'s limits)
//! and the admin flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pharos_cluster::{Cluster, series_from_proto};

use crate::ingest::{self, DecodeBudget, Decoded, IngestLimits, Refusal, Reservation};
use crate::{ApiError, Metrics, tenant_of};

#[derive(Clone)]
pub struct WriteState {
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<Metrics>,
    pub limits: IngestLimits,
    pub budget: DecodeBudget,
}

/// Rejections listed in one error answer; the rest are counted.
const MAX_LISTED: usize = 10;

/// Seconds a client is told to wait when the decode budget is spent.
const RETRY_AFTER_SECS: u64 = 1;

fn plain(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::BadRequest(m) => plain(StatusCode::BAD_REQUEST, m),
        Refusal::Busy(m) => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())], m).into_response()
        }
    }
}

/// Reads the body within the compressed-size limit, after reserving it
/// from the decode budget (by its declared `Content-Length`, or the limit).
async fn read_body(st: &WriteState, headers: &HeaderMap, body: Body) -> Result<(Bytes, Reservation), Response> {
    let max = st.limits.max_body_bytes();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let too_big = || {
        plain(
            StatusCode::BAD_REQUEST,
            format!(
                "remote_write body over {max} bytes: it cannot decode within {} bytes (--remote-write-max-decoded-bytes)",
                st.limits.max_decoded_bytes
            ),
        )
    };
    if declared.is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut reservation = st.budget.reservation();
    reservation.grow_to(declared.unwrap_or(max)).map_err(refused)?;
    match axum::body::to_bytes(body, max).await {
        Ok(b) => Ok((b, reservation)),
        Err(e) if crate::serve::is_body_timeout(&e) => Err(plain(StatusCode::REQUEST_TIMEOUT, e.to_string())),
        Err(e) => {
            Err(plain(StatusCode::BAD_REQUEST, format!("cannot read the remote_write body (at most {max} bytes): {e}")))
        }
    }
}

/// `POST /api/v1/write`: 204 once every sample is stored; 400 naming the
/// problem for a malformed body, a body over the limits, series whose
/// labels Prometheus refuses, native histograms (not stored yet), or
/// samples the TSDB rejected (the others in the request are stored, as
/// Prometheus does); 429 with `Retry-After` while the decode budget is spent.
pub async fn remote_write(State(st): State<WriteState>, headers: HeaderMap, body: Body) -> Response {
    st.metrics.http_requests.inc("/api/v1/write");
    let tenant = match tenant_of(&headers) {
        Ok(t) => t,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.message),
    };
    let (body, reservation) = match read_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let limits = st.limits.clone();
    let decoded = match tokio::task::spawn_blocking(move || ingest::decode(&body, &limits, reservation)).await {
        Ok(Ok(d)) => d,
        Ok(Err(r)) => return refused(r),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("remote_write decode task failed: {e}")),
    };
    let Decoded { series, refused: mut lines, refused_samples, reservation } = decoded;
    let batch: Vec<_> = series.into_iter().map(series_from_proto).collect();
    let res = match st.cluster.append(&tenant, batch).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "remote_write failed");
            let e = ApiError::from(e);
            return plain(e.status, e.message);
        }
    };
    drop(reservation);
    let rejected: u64 = res.rejected.iter().map(|r| r.count).sum::<u64>() + refused_samples;
    st.metrics.remote_write_samples.fetch_add(res.accepted, Ordering::Relaxed);
    st.metrics.remote_write_rejected.fetch_add(rejected, Ordering::Relaxed);
    lines.extend(res.rejected.iter().map(|r| r.to_string()));
    if lines.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut msg = format!("{rejected} sample(s) rejected, {} accepted:\n", res.accepted);
    for l in lines.iter().take(MAX_LISTED) {
        msg.push_str(l);
        msg.push('\n');
    }
    if lines.len() > MAX_LISTED {
        msg.push_str(&format!("... and {} more series\n", lines.len() - MAX_LISTED));
    }
    plain(StatusCode::BAD_REQUEST, msg)
}

/// `POST /api/v1/admin/flush`: every shard writes its head to disk.
pub async fn flush(State(st): State<WriteState>) -> Result<impl IntoResponse, ApiError> {
    st.metrics.http_requests.inc("/api/v1/admin/flush");
    st.cluster.flush().await?;
    Ok(StatusCode::NO_CONTENT)
}
