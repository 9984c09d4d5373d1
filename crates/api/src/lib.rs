//! The HTTP face of every Pharos process.
//!
//! Routers are built from parts so each role serves exactly what it owns:
//! [`common_routes`] (`/metrics`, `/-/healthy`, `/-/ready`) everywhere,
//! [`write_routes`] (remote_write, admin flush) on the gateway,
//! [`query_routes`] (the Prometheus HTTP API, evaluated here) on queriers,
//! [`proxy_routes`] (the same API forwarded to queriers) on the gateway, and
//! [`status_routes`] (build info, cluster topology), [`reload_routes`]
//! (`POST /-/reload`) where a configuration file is read. `pharos up` merges them
//! all over in-process shards.
//!
//! Every listener is served by [`serve`] within [`HttpLimits`];
//! remote_write bodies are decoded within [`IngestLimits`].
//!
//! Every error leaves as Prometheus's JSON error shape with its `errorType`
//! and status code. This crate decides nothing about storage or PromQL; it
//! translates HTTP to calls on [`pharos_cluster::Cluster`] and
//! [`pharos_promql::Engine`].

mod error;
pub mod ingest;
mod json;
pub mod metrics;
mod params;
mod proxy;
mod query;
mod selector;
mod serve;
mod targets;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;
pub use ingest::IngestLimits;
pub use metrics::Metrics;
pub use params::{now_ms, parse_duration_ms, parse_time_ms};
pub use query::QueryState;
pub use selector::parse_selector;
pub use serve::{HttpLimits, serve};
pub use targets::TargetsSource;

/// Header naming the tenant, as Cortex and Mimir use it.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The tenant of a request: the `X-Scope-OrgID` header, or `default`.
pub fn tenant_of(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    match headers.get(TENANT_HEADER) {
        None => Ok(pharos_model::DEFAULT_TENANT.to_string()),
        Some(v) => {
            let t = v.to_str().map_err(|_| ApiError::bad_data("X-Scope-OrgID is not valid text"))?.trim();
            if t.is_empty() || t.len() > 150 || t.contains(['/', '\u{0}']) || t == "." || t == ".." {
                return Err(ApiError::bad_data(format!("invalid tenant id {t:?} in X-Scope-OrgID")));
            }
            Ok(t.to_string())
        }
    }
}

/// `/metrics`, `/-/healthy`, `/-/ready`, and a JSON 404 for anything unknown.
pub fn common_routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::handler).with_state(metrics))
        .route("/-/healthy", get(|| async { "Pharos is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Pharos is Ready.\n" }))
        .fallback(|uri: axum::http::Uri| async move { ApiError::not_found(format!("unknown endpoint {}", uri.path())) })
}

/// `POST /api/v1/write` (remote_write 1.0, decoded within `limits`) and
/// `POST /api/v1/admin/flush`.
pub fn write_routes(cluster: Arc<pharos_cluster::Cluster>, metrics: Arc<Metrics>, limits: IngestLimits) -> Router {
    let budget = ingest::DecodeBudget::new(limits.decode_budget_bytes);
    let state = write::WriteState { cluster, metrics, limits, budget };
    Router::new()
        .route("/api/v1/write", post(write::remote_write))
        .route("/api/v1/admin/flush", post(write::flush))
        .with_state(state)
}

/// The Prometheus query API evaluated in this process.
pub fn query_routes(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/format_query", get(query::format_query).post(query::format_query))
        .route("/api/v1/series", get(query::series).post(query::series))
        .route("/api/v1/labels", get(query::label_names).post(query::label_names))
        .route("/api/v1/label/{name}/values", get(query::label_values))
        .with_state(state)
}

/// The Prometheus query API forwarded to one of `queriers` (base URLs), with
/// connect and request timeouts; fails only if no HTTP client can be built.
pub fn proxy_routes(queriers: Vec<String>) -> Result<Router, reqwest::Error> {
    let state = proxy::ProxyState::new(queriers)?;
    Ok(Router::new()
        .route("/api/v1/query", get(proxy::forward).post(proxy::forward))
        .route("/api/v1/query_range", get(proxy::forward).post(proxy::forward))
        .route("/api/v1/format_query", get(proxy::forward).post(proxy::forward))
        .route("/api/v1/series", get(proxy::forward).post(proxy::forward))
        .route("/api/v1/labels", get(proxy::forward).post(proxy::forward))
        .route("/api/v1/label/{name}/values", get(proxy::forward))
        .with_state(state))
}

/// `/api/v1/targets` from this process's scraper or merged from every
/// scraper; on a scraper also its ring membership (`/-/member`).
pub fn targets_routes(source: TargetsSource) -> Router {
    Router::new()
        .route("/api/v1/targets", get(targets::handler))
        .route(pharos_scrape::membership::MEMBER_PATH, get(targets::member))
        .with_state(source)
}

/// Reloads a process's configuration: `Ok` once the new one runs, or the
/// error that kept the old one running.
pub type Reload = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `POST /-/reload` (and `PUT`, as Prometheus): 200 with an empty body when
/// the configuration was reloaded, 500 with the error otherwise.
pub fn reload_routes(reload: Reload) -> Router {
    let handler = move || {
        let reload = reload.clone();
        async move {
            match reload().await {
                Ok(()) => (axum::http::StatusCode::OK, String::new()),
                Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}\n")),
            }
        }
    };
    Router::new().route("/-/reload", post(handler.clone()).put(handler))
}

/// `/api/v1/status/buildinfo` and `/api/v1/status/cluster` (whose data the
/// caller renders, since only the process that started the roles knows it).
pub fn status_routes(cluster_status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>) -> Router {
    Router::new()
        .route(
            "/api/v1/status/buildinfo",
            get(|| async {
                json::success(serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                    "application": "pharos",
                }))
            }),
        )
        .route("/api/v1/status/cluster", get(move || async move { json::success(cluster_status()) }))
}
