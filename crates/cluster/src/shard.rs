//! One shard's storage as the other roles see it.
//!
//! [`Shard`] is the storage contract ([`pharos_storage::Storage`]) made
//! async: the same calls with the same arguments, answered by a TSDB in
//! this process ([`LocalShard`], which only moves the blocking calls to
//! tokio's blocking pool) or over gRPC ([`RemoteShard`]), plus what only a
//! shard does (pushed-down PromQL evaluation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use pharos_model::{Labels, Matcher, Series};
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_client::IngesterClient;
use pharos_storage::{AppendResult, MetaQuery, SeriesSamples, Storage};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::convert::*;
use crate::cursor::{ReplicaCursor, Step};
use crate::write_stream::StreamClient;
use crate::{DEFAULT_INFLIGHT_BYTES, Error, InflightBytes, MAX_MESSAGE_BYTES, ReadReplica};

/// The operations the distributor and the querier need from one shard.
#[async_trait]
pub trait Shard: Send + Sync {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error>;
    /// [`Self::append`] of a batch the caller keeps (to retry it): a shard
    /// that only reads the batch (a remote one converts it to protobuf)
    /// saves the caller a copy.
    async fn append_borrowed(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        self.append(tenant, batch.to_vec()).await
    }
    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;
    /// [`Storage::series`]: sorted label sets matching the query.
    async fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error>;
    /// [`Storage::label_names`]: sorted label names.
    async fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error>;
    /// [`Storage::label_values`]: sorted values of one label.
    async fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error>;
    async fn flush(&self) -> Result<(), Error>;
    /// Evaluates a pushed-down PromQL expression over this shard's series only.
    async fn eval(&self, tenant: &str, req: &pharos_promql::PushdownRequest) -> Result<pharos_promql::Partial, Error> {
        let _ = (tenant, req);
        Err(Error::Internal("this shard cannot evaluate PromQL".into()))
    }
}

/// A shard whose TSDB lives in this process. Storage calls block, so they
/// run on tokio's blocking pool, never on the async workers.
#[derive(Clone)]
pub struct LocalShard {
    storage: Arc<dyn Storage>,
    /// Evaluates pushed-down expressions; one per shard, so every request
    /// to it shares the engine's concurrency limit.
    pub(crate) engine: pharos_promql::Engine,
}

impl LocalShard {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, engine: pharos_promql::Engine::default() }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> Result<T, pharos_storage::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || f(&*storage))
            .await
            .map_err(|e| Error::Internal(format!("storage task failed: {e}")))?
            .map_err(Error::from)
    }
}

#[async_trait]
impl Shard for LocalShard {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        let tenant = tenant.to_string();
        self.blocking(move |s| s.append(&tenant, &batch)).await
    }

    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let (tenant, matchers) = (tenant.to_string(), matchers.to_vec());
        self.blocking(move |s| s.select(&tenant, &matchers, mint, maxt)).await
    }

    async fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        let (tenant, q) = (tenant.to_string(), q.clone());
        self.blocking(move |s| s.series(&tenant, &q)).await
    }

    async fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        let (tenant, q) = (tenant.to_string(), q.clone());
        self.blocking(move |s| s.label_names(&tenant, &q)).await
    }

    async fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        let (tenant, name, q) = (tenant.to_string(), name.to_string(), q.clone());
        self.blocking(move |s| s.label_values(&tenant, &name, &q)).await
    }

    async fn flush(&self) -> Result<(), Error> {
        self.blocking(|s| s.flush()).await
    }

    async fn eval(&self, tenant: &str, req: &pharos_promql::PushdownRequest) -> Result<pharos_promql::Partial, Error> {
        crate::pushdown::eval_local(self, tenant, req).await
    }
}

/// How long a call to a shard keeps retrying (other replicas, a new
/// leader) before it fails.
pub const SHARD_DEADLINE: Duration = Duration::from_secs(15);
/// How long one attempt on one replica may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Calls in flight to one shard at most; further callers wait (backpressure).
const MAX_INFLIGHT: usize = 64;

struct ReplicaClient {
    /// Raft node id (N of `ingester-N`), to follow a "not leader" hint.
    node: Option<u64>,
    addr: String,
    client: IngesterClient<Channel>,
    /// Writes go over this replica's write stream (same channel).
    stream: Arc<StreamClient>,
}

/// A shard reached over gRPC: one replica, or the replicas of a raft group.
///
/// Calls go to the replica believed to lead. A "not leader" answer names
/// the leader, which is tried next and remembered; an unreachable replica
/// makes the call move on to the next one and is passed over for a while
/// (a stale hint naming it is ignored; see `cursor.rs`). Retries back off (25 ms doubling to 500 ms) until
/// [`SHARD_DEADLINE`]. Retrying a write is safe: a batch
/// applied twice stores nothing new (exact duplicates are dropped).
/// Connections are made lazily and re-made after failures by tonic.
/// Writes travel on one long-lived stream per replica (`write_stream.rs`),
/// each write one attempt of the same retry loop; reads are unary calls.
///
/// Reads in [`ReadReplica::Follower`] mode go to the replicas in turn
/// (round robin, leader included) and ask for a follower read; a replica
/// that fails (down, no leader it can reach, behind for too long) makes the
/// read move on to the next one at once, and only a whole round of
/// failures backs off.
#[derive(Clone)]
pub struct RemoteShard {
    id: u32,
    replicas: Arc<Vec<ReplicaClient>>,
    leader: Arc<AtomicUsize>,
    read_replica: ReadReplica,
    /// The replica the next follower-mode read starts at.
    next_read: Arc<AtomicUsize>,
    inflight: Arc<Semaphore>,
    /// Write bytes in flight to this shard at most (see `inflight.rs`).
    write_budget: InflightBytes,
    deadline: Duration,
    /// Write streams opened to this shard's replicas (first use and reopens).
    streams_opened: Arc<AtomicU64>,
}

impl RemoteShard {
    /// A shard of one replica; `addr` is `host:port`.
    pub fn new(id: u32, addr: &str) -> Result<Self, Error> {
        Self::replicated(id, &[(None, addr.to_string())])
    }

    /// A shard of several replicas: (raft node id, `host:port`) each.
    pub fn replicated(id: u32, replicas: &[(Option<u64>, String)]) -> Result<Self, Error> {
        if replicas.is_empty() {
            return Err(Error::BadRequest(format!("shard {id} has no replica")));
        }
        let mut clients = Vec::new();
        let streams_opened = Arc::new(AtomicU64::new(0));
        for (node, addr) in replicas {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .map_err(|e| Error::BadRequest(format!("bad ingester address {addr:?}: {e}")))?
                .connect_timeout(Duration::from_secs(1))
                .connect_lazy();
            let client = IngesterClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let stream = Arc::new(StreamClient::new(id, addr, client.clone(), streams_opened.clone()));
            clients.push(ReplicaClient { node: *node, addr: addr.clone(), client, stream });
        }
        Ok(Self {
            id,
            replicas: Arc::new(clients),
            leader: Arc::new(AtomicUsize::new(0)),
            read_replica: ReadReplica::Leader,
            next_read: Arc::new(AtomicUsize::new(0)),
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            write_budget: InflightBytes::new(DEFAULT_INFLIGHT_BYTES),
            deadline: SHARD_DEADLINE,
            streams_opened,
        })
    }

    /// Write streams opened so far to this shard's replicas: one per
    /// replica written to, plus one per reopen after a stream broke.
    pub fn write_streams_opened(&self) -> u64 {
        self.streams_opened.load(Ordering::Relaxed)
    }

    /// Write bytes this shard may hold in flight before writers wait
    /// (default [`DEFAULT_INFLIGHT_BYTES`]).
    pub fn with_inflight_bytes(mut self, limit: u32) -> Self {
        self.write_budget = InflightBytes::new(limit);
        self
    }

    /// Which replica answers reads (default [`ReadReplica::Leader`]).
    pub fn with_read_replica(mut self, read: ReadReplica) -> Self {
        self.read_replica = read;
        self
    }

    /// How long calls retry before failing (default [`SHARD_DEADLINE`]).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The address of the replica calls currently go to.
    pub fn leader_addr(&self) -> &str {
        let i = self.leader.load(Ordering::Relaxed) % self.replicas.len();
        &self.replicas[i].addr
    }

    fn err(&self, s: tonic::Status) -> Error {
        Error::from_status(self.id, s)
    }

    /// Runs the read `f` (which sends its request in the mode it is given):
    /// on the leader, or in follower mode on each replica in turn.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(IngesterClient<Channel>, ReadReplica) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let (shard, mode) = (self.id, self.read_replica);
        self.call_replica(mode == ReadReplica::Follower, |r| {
            let call = f(r.client.clone(), mode);
            async move { call.await.map_err(|s| Error::from_status(shard, s)) }
        })
        .await
    }

    /// Runs `f` against the leader's client, following redirects and
    /// failing over (see the type's overview); or with `spread` a
    /// follower-mode read: it starts at the next replica in turn, follows
    /// no "not leader" hint and moves on at once after a failure, backing
    /// off after a whole round of them. The decisions are the
    /// [`ReplicaCursor`]'s; this loop makes the attempts and waits.
    async fn call_replica<T, F, Fut>(&self, spread: bool, f: F) -> Result<T, Error>
    where
        F: Fn(&ReplicaClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let _permit = self.inflight.acquire().await.map_err(|_| Error::Internal("shard client closed".into()))?;
        let first = match spread {
            true => self.next_read.fetch_add(1, Ordering::Relaxed),
            false => self.leader.load(Ordering::Relaxed),
        };
        let nodes = self.replicas.iter().map(|r| r.node).collect();
        let mut cursor = ReplicaCursor::new(self.id, nodes, first, spread, Instant::now(), self.deadline);
        let mut i = cursor.current();
        loop {
            let replica = &self.replicas[i];
            let err = match tokio::time::timeout(ATTEMPT_TIMEOUT, f(replica)).await {
                Ok(Ok(v)) => {
                    if !spread {
                        self.leader.store(i, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => e,
                Err(_) => Error::Unavailable { shard: self.id, msg: format!("{} timed out", replica.addr) },
            };
            tracing::debug!(shard = self.id, replica = %replica.addr, error = %err, "shard call failed");
            match cursor.next(err, Instant::now()) {
                Step::Try { replica, wait } => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    i = replica;
                }
                Step::Fail(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Shard for RemoteShard {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        self.append_borrowed(tenant, &batch).await
    }

    async fn append_borrowed(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        // A slow shard holds its writers here once its budget is taken
        // (backpressure), instead of every waiting batch piling up.
        let _bytes = self.write_budget.acquire(batch).await?;
        // Each attempt converts the batch afresh: a first attempt that
        // succeeds copies the labels once, not twice (convert, then clone).
        let resp = self
            .call_replica(false, |r| {
                let req = pb::WriteRequest {
                    tenant: tenant.to_string(),
                    series: batch.iter().map(|s| series_to_proto(&s.labels, &s.samples)).collect(),
                };
                let stream = r.stream.clone();
                async move { stream.write(req).await }
            })
            .await?;
        append_result_from_proto(self.id, resp, batch)
    }

    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let req = pb::SelectRequest {
            tenant: tenant.to_string(),
            matchers: matchers_to_proto(matchers),
            start_ms: mint,
            end_ms: maxt,
            limit: 0,
        };
        self.read(|mut c, mode| {
            let req = mode.request(req.clone());
            async move {
                let mut stream = c.select(req).await?.into_inner();
                let mut out = Vec::new();
                while let Some(msg) = stream.next().await {
                    out.extend(msg?.series.into_iter().map(select_result_from_proto));
                }
                Ok(out)
            }
        })
        .await
    }

    async fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        let req = pb::SelectRequest {
            tenant: tenant.to_string(),
            matchers: matchers_to_proto(&q.matchers),
            start_ms: q.mint,
            end_ms: q.maxt,
            limit: q.limit as u64,
        };
        let resp = self
            .read(|mut c, mode| {
                let req = mode.request(req.clone());
                async move { c.series(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(resp.series.into_iter().map(|s| labels_from_proto(s.labels)).collect())
    }

    async fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.labels(tenant, None, q).await
    }

    async fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.labels(tenant, Some(name), q).await
    }

    /// Flushes every replica (each has its own TSDB); fails only if none could.
    async fn flush(&self) -> Result<(), Error> {
        let calls = self.replicas.iter().map(|r| {
            let mut c = r.client.clone();
            async move { c.flush(pb::FlushRequest {}).await }
        });
        let mut last = None;
        let mut ok = false;
        for r in futures::future::join_all(calls).await {
            match r {
                Ok(_) => ok = true,
                Err(s) => last = Some(self.err(s)),
            }
        }
        match (ok, last) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    async fn eval(&self, tenant: &str, req: &pharos_promql::PushdownRequest) -> Result<pharos_promql::Partial, Error> {
        let req = crate::pushdown::request_to_proto(tenant, req);
        let resp = self
            .read(|mut c, mode| {
                let req = mode.request(req.clone());
                async move { c.eval(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(pharos_promql::Partial {
            series: resp.series.into_iter().map(select_result_from_proto).collect(),
            annotations: crate::pushdown::annotations_from_proto(resp.annotations),
        })
    }
}

impl RemoteShard {
    /// Label names (`name` = None) or the values of one label, over gRPC.
    async fn labels(&self, tenant: &str, name: Option<&str>, q: &MetaQuery) -> Result<Vec<String>, Error> {
        let req = pb::LabelsRequest {
            tenant: tenant.to_string(),
            name: name.unwrap_or_default().to_string(),
            matchers: matchers_to_proto(&q.matchers),
            start_ms: q.mint,
            end_ms: q.maxt,
            limit: q.limit as u64,
        };
        let names = name.is_none();
        let resp = self
            .read(|mut c, mode| {
                let req = mode.request(req.clone());
                async move {
                    let r = if names { c.label_names(req).await } else { c.label_values(req).await };
                    r.map(|r| r.into_inner())
                }
            })
            .await?;
        Ok(resp.values)
    }
}
