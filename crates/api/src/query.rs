//! The Prometheus query API, evaluated in this process over the cluster.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use pharos_cluster::Cluster;
use pharos_model::{Matcher, Series};
use pharos_promql::{Engine, Partial, PushdownRequest, QueryResult, QueryStats, Queryable, SelectError};
use pharos_storage::MetaQuery;
use serde_json::{Value as J, json};

use crate::json::{self, success};
use crate::params::{self, now_ms, time_param};
use crate::{ApiError, Metrics, parse_duration_ms, parse_selector, tenant_of};

/// Prometheus's limit on points per series in a range query.
const MAX_POINTS: i128 = 11_000;

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

    fn supports_pushdown(&self) -> bool {
        self.cluster.supports_pushdown()
    }

    async fn eval_partials(&self, req: &PushdownRequest) -> Result<Vec<Partial>, SelectError> {
        self.cluster.eval_partials(self.tenant, req).await.map_err(|e| SelectError(e.to_string()))
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
    let (res, stats) = st.engine.instant_with_stats(&view, q, t).await?;
    Ok(annotated(success(with_stats(json::value(&res.value), &r, &stats)), &res))
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
    // In i128: the span of two valid times does not fit an i64.
    if (i128::from(end) - i128::from(start)) / i128::from(step) > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let view = TenantView { cluster: &st.cluster, tenant: &r.tenant };
    let (res, stats) = st.engine.range_with_stats(&view, q, start, end, step).await?;
    Ok(annotated(success(with_stats(json::value(&res.value), &r, &stats)), &res))
}

/// Prometheus 3's top-level `warnings` and `infos` (left out when empty).
fn annotated(mut body: axum::Json<J>, res: &QueryResult) -> axum::Json<J> {
    if !res.warnings.is_empty() {
        body.0["warnings"] = json!(res.warnings);
    }
    if !res.infos.is_empty() {
        body.0["infos"] = json!(res.infos);
    }
    body
}

/// Adds Prometheus's `stats` object when the request asks for it (`stats=<anything>`).
fn with_stats(mut data: J, r: &Req, s: &QueryStats) -> J {
    if params::get(&r.params, "stats").is_some_and(|v| !v.is_empty()) {
        data["stats"] = stats_json(s);
    }
    data
}

fn stats_json(s: &QueryStats) -> J {
    let secs = |d: std::time::Duration| d.as_secs_f64();
    json!({
        "timings": {
            "evalTotalTime": secs(s.total_time),
            "resultSortTime": 0,
            "queryPreparationTime": secs(s.prepare_time),
            "innerEvalTime": secs(s.inner_eval_time),
            "execQueueTime": secs(s.queue_time),
            "execTotalTime": secs(s.total_time),
        },
        "samples": {
            "totalQueryableSamples": s.total_queryable_samples,
            "peakSamples": s.peak_samples,
        },
    })
}

/// `GET|POST /api/v1/format_query`: the query, prettified as Prometheus prints it.
pub async fn format_query(
    State(st): State<QueryState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<J>, ApiError> {
    st.metrics.http_requests.inc("/api/v1/format_query");
    let params = params::collect(uri.query(), &headers, &body);
    let q = params::get(&params, "query").unwrap_or("");
    let pretty = st.engine.format_query(q).await.map_err(|e| match e {
        pharos_promql::Error::Internal(_) => ApiError::from(e),
        _ => ApiError::bad_data(format!("invalid parameter \"query\": {e}")),
    })?;
    Ok(success(J::String(pretty)))
}

/// Prometheus's `limit` parameter: absent or 0 means no limit.
fn limit_param(r: &Req) -> Result<usize, ApiError> {
    match params::get(&r.params, "limit") {
        None | Some("") => Ok(usize::MAX),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(ApiError::bad_data("invalid parameter \"limit\": limit must be non-negative")),
            Ok(0) => Ok(usize::MAX),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(e) => Err(ApiError::bad_data(format!("invalid parameter \"limit\": {e}"))),
        },
    }
}

/// A list cut to `limit` items, with Prometheus's warning when something was cut.
fn limited(mut items: Vec<J>, limit: usize) -> axum::Json<J> {
    if items.len() > limit {
        items.truncate(limit);
        return axum::Json(json!({
            "status": "success",
            "data": items,
            "warnings": ["results truncated due to limit"],
        }));
    }
    success(J::Array(items))
}

/// The `start`/`end` of a metadata request; absent, the beginning and end of
/// time (as Prometheus).
fn time_range(r: &Req) -> Result<(i64, i64), ApiError> {
    let start = time_param(&r.params, "start", i64::MIN)?;
    let end = time_param(&r.params, "end", i64::MAX)?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    Ok((start, end))
}

/// The queries of a metadata request, one per matcher set (one without
/// matchers when there is none), each with the request's time range. The
/// shards are asked for one item more than `limit`, so that a truncated
/// answer can be told (as Prometheus 3 does).
fn meta_queries(r: &Req, sets: Vec<Vec<Matcher>>, limit: usize) -> Result<Vec<MetaQuery>, ApiError> {
    let (mint, maxt) = time_range(r)?;
    let limit = if limit == usize::MAX { 0 } else { limit.saturating_add(1) };
    let sets = if sets.is_empty() { vec![Vec::new()] } else { sets };
    Ok(sets.into_iter().map(|matchers| MetaQuery { matchers, mint, maxt, limit }).collect())
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
    let limit = limit_param(&r)?;
    let sets = matcher_sets(&r, true)?;
    let mut all = std::collections::BTreeSet::new();
    for q in meta_queries(&r, sets, limit)? {
        all.extend(st.cluster.series(&r.tenant, &q).await?);
    }
    Ok(limited(all.iter().map(json::labels).collect(), limit))
}

async fn labels(st: &QueryState, r: &Req, name: Option<&str>) -> Result<axum::Json<J>, ApiError> {
    let limit = limit_param(r)?;
    let sets = matcher_sets(r, false)?;
    let mut all = std::collections::BTreeSet::new();
    for q in meta_queries(r, sets, limit)? {
        match name {
            None => all.extend(st.cluster.label_names(&r.tenant, &q).await?),
            Some(n) => {
                all.extend(st.cluster.label_values(&r.tenant, n, &q).await?.into_iter().filter(|v| !v.is_empty()))
            }
        }
    }
    Ok(limited(all.into_iter().map(J::String).collect(), limit))
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

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_cluster::LocalShard;
    use pharos_model::{Labels, Sample};
    use pharos_storage::{MemStorage, SeriesSamples};

    /// Two `up` series with samples at 10s and 20s, in one in-memory shard.
    async fn state() -> QueryState {
        let cluster = Cluster::new(vec![Arc::new(LocalShard::new(Arc::new(MemStorage::new())))]);
        let batch = ["a", "b"]
            .iter()
            .map(|job| SeriesSamples {
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", job)]),
                samples: vec![Sample::new(10_000, 1.0), Sample::new(20_000, 1.0)],
            })
            .collect();
        cluster.append(pharos_model::DEFAULT_TENANT, batch).await.unwrap();
        QueryState { cluster: Arc::new(cluster), engine: Arc::new(Engine::default()), metrics: Metrics::new() }
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    async fn get(
        f: impl AsyncFnOnce(State<QueryState>, Uri, HeaderMap, Bytes) -> Result<axum::Json<J>, ApiError>,
        st: &QueryState,
        u: &str,
    ) -> Result<J, ApiError> {
        f(State(st.clone()), uri(u), HeaderMap::new(), Bytes::new()).await.map(|j| j.0)
    }

    #[tokio::test]
    async fn format_query_prettifies_and_rejects_bad_queries() {
        let st = state().await;
        let v = get(format_query, &st, "/api/v1/format_query?query=sum(rate(x%5B5m%5D))%20by%20(job)").await.unwrap();
        assert_eq!(v["status"], "success");
        let pretty = v["data"].as_str().unwrap();
        assert!(pretty.contains("sum by (job)") && pretty.contains("rate(x[5m])"), "{pretty}");
        let err = get(format_query, &st, "/api/v1/format_query?query=sum(").await.unwrap_err();
        assert_eq!(err.error_type, "bad_data");
        assert!(err.message.starts_with("invalid parameter \"query\""), "{}", err.message);
    }

    #[tokio::test]
    async fn warnings_and_infos_are_top_level() {
        let st = state().await;
        let v = get(instant, &st, "/api/v1/query?query=up&time=25").await.unwrap();
        assert!(v.get("warnings").is_none() && v.get("infos").is_none(), "{v}");
        let v = get(instant, &st, "/api/v1/query?query=rate(up%5B1m%5D)&time=25").await.unwrap();
        assert_eq!(
            v["infos"][0],
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:6)",
            "{v}"
        );
        let v = get(range, &st, "/api/v1/query_range?query=sort(up)&start=10&end=20&step=10").await.unwrap();
        assert_eq!(
            v["warnings"][0],
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)",
            "{v}"
        );
    }

    #[tokio::test]
    async fn stats_are_reported_only_when_asked() {
        let st = state().await;
        let v = get(instant, &st, "/api/v1/query?query=up&time=25&stats=all").await.unwrap();
        assert_eq!(v["data"]["stats"]["samples"]["totalQueryableSamples"], 2, "{v}");
        assert!(v["data"]["stats"]["timings"]["execTotalTime"].is_f64(), "{v}");
        let v = get(instant, &st, "/api/v1/query?query=up&time=25").await.unwrap();
        assert!(v["data"].get("stats").is_none(), "{v}");
        let v = get(range, &st, "/api/v1/query_range?query=up&start=10&end=20&step=10&stats=all").await.unwrap();
        assert_eq!(v["data"]["stats"]["samples"]["totalQueryableSamples"], 4, "{v}");
    }

    async fn post_form(
        f: impl AsyncFnOnce(State<QueryState>, Uri, HeaderMap, Bytes) -> Result<axum::Json<J>, ApiError>,
        st: &QueryState,
        u: &str,
        body: String,
    ) -> Result<J, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        f(State(st.clone()), uri(u), headers, Bytes::from(body)).await.map(|j| j.0)
    }

    fn with_engine(mut st: QueryState, opts: pharos_promql::EngineOptions) -> QueryState {
        st.engine = Arc::new(Engine::new(opts));
        st
    }

    #[tokio::test]
    async fn deeply_nested_query_is_refused_without_a_stack_overflow() {
        let st = state().await;
        let q = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let body: String = form_urlencoded::Serializer::new(String::new()).append_pair("query", &q).finish();
        let err = post_form(instant, &st, "/api/v1/query", body).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (400, "bad_data"));
        assert!(err.message.contains("(max query depth)"), "{}", err.message);
        let err = get(format_query, &st, &format!("/api/v1/format_query?query={}1", "(".repeat(2_000))).await;
        assert!(err.unwrap_err().message.contains("(max query depth)"));
        // The process is alive and answers the next query.
        assert_eq!(get(instant, &st, "/api/v1/query?query=up&time=25").await.unwrap()["status"], "success");
    }

    #[tokio::test]
    async fn range_arithmetic_cannot_overflow() {
        let st = state().await;
        let err = get(range, &st, "/api/v1/query_range?query=1&start=-1e16&end=1e16&step=1").await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (400, "bad_data"));
        assert_eq!(err.message, "invalid parameter \"start\": cannot parse \"-1e16\" to a valid timestamp");
        // Both ends valid, their span in ms beyond an i64.
        let err = get(range, &st, "/api/v1/query_range?query=1&start=-9e15&end=9e15&step=1").await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (400, "bad_data"));
        assert!(err.message.starts_with("exceeded maximum resolution of 11,000 points"), "{}", err.message);
        let err = get(instant, &st, "/api/v1/query?query=1&time=1e300").await.unwrap_err();
        assert_eq!(err.message, "invalid parameter \"time\": cannot parse \"1e300\" to a valid timestamp");
    }

    #[tokio::test]
    async fn a_subquery_over_max_samples_is_refused_with_422() {
        let st = state().await;
        let err = get(instant, &st, "/api/v1/query?query=count_over_time(vector(1)%5B100y:1ms%5D)").await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (422, "execution"));
        assert_eq!(err.message, "query processing would load too many samples into memory in query execution");
    }

    #[tokio::test]
    async fn the_deadline_answers_503_while_evaluation_runs() {
        let opts = pharos_promql::EngineOptions {
            timeout: std::time::Duration::from_millis(200),
            ..pharos_promql::EngineOptions::default()
        };
        let st = with_engine(state().await, opts);
        let u = "/api/v1/query?query=count_over_time(absent_metric%5B100y:1ms%5D)&time=25";
        let err = get(instant, &st, u).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (503, "timeout"));
        assert_eq!(err.message, "query timed out in expression evaluation");
    }

    #[tokio::test]
    async fn an_oversized_regex_is_refused_with_400() {
        let opts = pharos_promql::EngineOptions { max_regex_bytes: 10_000, ..pharos_promql::EngineOptions::default() };
        let st = with_engine(state().await, opts);
        let err = get(instant, &st, "/api/v1/query?query=up%7Bjob%3D~%22a%7B2000%7D%22%7D").await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.error_type), (400, "bad_data"));
        assert!(err.message.contains("limit of 10000 bytes (max regex size)"), "{}", err.message);
    }

    #[tokio::test]
    async fn metadata_honors_limit() {
        let st = state().await;
        let v = get(series, &st, "/api/v1/series?match[]=up&limit=1").await.unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["warnings"][0], "results truncated due to limit");
        let v = get(series, &st, "/api/v1/series?match[]=up&limit=2").await.unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
        assert!(v.get("warnings").is_none());
        let v = get(label_names, &st, "/api/v1/labels?limit=1").await.unwrap();
        assert_eq!(v["data"], json!(["__name__"]), "{v}");
        let err = get(series, &st, "/api/v1/series?match[]=up&limit=-1").await.unwrap_err();
        assert_eq!(err.error_type, "bad_data");
        let v = label_values(
            State(st.clone()),
            Path("job".into()),
            uri("/api/v1/label/job/values?limit=1"),
            HeaderMap::new(),
        )
        .await
        .unwrap()
        .0;
        assert_eq!(v["data"], json!(["a"]), "{v}");
    }

    #[tokio::test]
    async fn metadata_honors_match_start_and_end() {
        let st = state().await;
        let v = get(series, &st, "/api/v1/series?match[]=up%7Bjob%3D%22b%22%7D").await.unwrap();
        assert_eq!(v["data"], json!([{"__name__": "up", "job": "b"}]), "{v}");
        let v = get(series, &st, "/api/v1/series?match[]=up&start=15&end=30").await.unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
        let v = get(series, &st, "/api/v1/series?match[]=up&start=30").await.unwrap();
        assert_eq!(v["data"], json!([]), "{v}");
        let v = get(label_names, &st, "/api/v1/labels?end=5").await.unwrap();
        assert_eq!(v["data"], json!([]), "{v}");
        let v = get(label_names, &st, "/api/v1/labels?start=0&end=10").await.unwrap();
        assert_eq!(v["data"], json!(["__name__", "job"]), "{v}");
        let v = get(label_names, &st, "/api/v1/labels?match[]=up%7Bjob%3D%22a%22%7D&start=0").await.unwrap();
        assert_eq!(v["data"], json!(["__name__", "job"]), "{v}");
        let err = get(series, &st, "/api/v1/series?match[]=up&start=30&end=10").await.unwrap_err();
        assert_eq!(err.error_type, "bad_data");
    }
}
