//! Forwarding of query requests from the gateway to the queriers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

#[derive(Clone)]
pub struct ProxyState {
    queriers: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    client: reqwest::Client,
}

/// How long connecting to a querier may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one forwarded request may take in all: a querier's own query
/// timeout (2 minutes by default) and some room to send the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(150);

impl ProxyState {
    pub fn new(queriers: Vec<String>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { queriers: Arc::new(queriers), next: Arc::new(AtomicUsize::new(0)), client })
    }
}

/// Sends the request to the next querier in turn; on a connection failure
/// tries the others before answering 503.
pub async fn forward(
    State(st): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = st.queriers.len();
    if n == 0 {
        return ApiError::unavailable("no querier configured").into_response();
    }
    let first = st.next.fetch_add(1, Ordering::Relaxed);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut last_err = String::new();
    for i in 0..n {
        let base = &st.queriers[(first + i) % n];
        let mut rb = st.client.request(method.clone(), format!("{base}{path}")).body(body.clone());
        for name in [header::CONTENT_TYPE.as_str(), crate::TENANT_HEADER, header::AUTHORIZATION.as_str()] {
            if let Some(v) = headers.get(name) {
                rb = rb.header(name, v.clone());
            }
        }
        match rb.send().await {
            Ok(resp) => {
                let status = resp.status();
                let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
                return match resp.bytes().await {
                    Ok(b) => {
                        let mut r = Response::new(Body::from(b));
                        *r.status_mut() = status;
                        if let Some(ct) = ct {
                            r.headers_mut().insert(header::CONTENT_TYPE, ct);
                        }
                        r
                    }
                    Err(e) => ApiError::unavailable(format!("querier {base}: {e}")).into_response(),
                };
            }
            Err(e) => last_err = format!("querier {base}: {e}"),
        }
    }
    ApiError::unavailable(format!("no querier answered; last error: {last_err}")).into_response()
}
