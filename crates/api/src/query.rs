//! The Prometheus query API, evaluated in this process over the cluster.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use pharos_cluster::Cluster;
use pharos_model::{Matcher, Series};
use pharos_promql::{Engine, Queryable, SelectError};
use serde_json::Value as J;

use crate::json::{self, success};
use crate::params::{self, now_ms, time_param};
use crate::{ApiError, Metrics, parse_duration_ms, parse_selector, tenant_of};

/// Prometheus's limit on points per series in a range query.
const MAX_POINTS: i64 = 11_000;

#[derive(Clone)]
pub struct QueryState {
    pub cluster: Arc<Cluster>,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
}

/// The cluster as one tenant's PromQL storage.
struct TenantView<'a> {
    cluster: &'a Cluster,
    tenant: &'a str,
}

#[async_trait]
impl Queryable for TenantView<'_> {
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError> {
        self.cluster.select(self.tenant, matchers, mint, maxt).await.map_err(|e| SelectError(e.to_string()))
    }
}

struct Req {
    tenant: String,
    params: Vec<(String, String)>,
}

fn req(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Req, ApiError> {
    Ok(Req { tenant: tenant_of(headers)?, params: params::collect(uri.query(), headers, body) })
}

fn query_param(r: &Req) -> Result<&str, ApiError> {
    match params::get(&r.params, "query") {
        Some(q) if !q.trim().is_empty() => Ok(q),
        _ => Err(ApiError::bad_data("invalid parameter \"query\": parameter is missing or empty")),
    }
}

pub async fn instant(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/query");
    let r = req(&uri, &headers, &body)?;
    let q = query_param(&r)?;
    let t = time_param(&r.params, "time", now_ms())?;
    let view = TenantView { cluster: &st.cluster, tenant: &r.tenant };
    let v = st.engine.instant(&view, q, t).await?;
    Ok(success(json::value(&v)))
}

pub async fn range(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/query_range");
    let r = req(&uri, &headers, &body)?;
    let q = query_param(&r)?;
    let need = |name: &str| {
        params::get(&r.params, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"{name}\": parameter is missing")))
    };
    let start = params::parse_time_ms(need("start")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?;
    let end = params::parse_time_ms(need("end")?)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    let step =
        parse_duration_ms(need("step")?).map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let view = TenantView { cluster: &st.cluster, tenant: &r.tenant };
    let v = st.engine.range(&view, q, start, end, step).await?;
    Ok(success(json::value(&v)))
}

fn matcher_sets(r: &Req, required: bool) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let raw = params::all(&r.params, "match[]");
    if raw.is_empty() && required {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let mut sets = Vec::new();
    for m in raw {
        sets.extend(parse_selector(m).map_err(ApiError::bad_data)?);
    }
    Ok(sets)
}

pub async fn series(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/series");
    let r = req(&uri, &headers, &body)?;
    let mut all = std::collections::BTreeSet::new();
    for set in matcher_sets(&r, true)? {
        all.extend(st.cluster.series(&r.tenant, &set).await?);
    }
    Ok(success(J::Array(all.iter().map(json::labels).collect())))
}

async fn labels(st: &QueryState, r: &Req, name: Option<&str>) -> Result<axum::Json<J>, ApiError> {
    let sets = matcher_sets(r, false)?;
    let mut all = std::collections::BTreeSet::new();
    if sets.is_empty() {
        all.extend(st.cluster.labels(&r.tenant, name, &[]).await?);
    }
    for set in sets {
        all.extend(st.cluster.labels(&r.tenant, name, &set).await?);
    }
    Ok(success(J::Array(all.into_iter().map(J::String).collect())))
}

pub async fn label_names(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/labels");
    let r = req(&uri, &headers, &body)?;
    labels(&st, &r, None).await
}

pub async fn label_values(
    State(st): State<QueryState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/label/:name/values");
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let r = req(&uri, &headers, &Bytes::new())?;
    labels(&st, &r, Some(&name)).await
}
