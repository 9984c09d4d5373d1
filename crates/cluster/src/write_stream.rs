//! The write stream: many write batches over one long-lived gRPC stream
//! (`Ingester/WriteStream`), both ends.
//!
//! - Client ([`StreamClient`], one per replica of a
//!   [`RemoteShard`](crate::RemoteShard)): the stream is opened on the first
//!   write and kept for every later one. A writer registers a oneshot under a
//!   fresh id in the pending map, sends `(id, batch)` and waits for the
//!   answer with that id. When the stream breaks (the ingester died, shut
//!   down or the connection dropped), every pending writer gets
//!   `Unavailable` and the next write opens a new stream. Leader following,
//!   retries, the deadline and the byte budget are the caller's
//!   (`RemoteShard::call_replica` and `cursor.rs`, `inflight.rs`): a
//!   stream write is one attempt.
//! - Server ([`serve`], for the ingester): each request is handled in its
//!   own task, so the batches in flight on one stream reach
//!   `Replica::write` together and share a raft entry; each is answered
//!   under its id when applied or failed. A per-request error (not leader,
//!   a malformed request) answers that id only; the stream stays open.
//!
//! Everything is bounded: requests queued by the client, requests handled
//! at once per stream on the server (past that it stops reading and HTTP/2
//! flow control holds the client back), answers queued to be sent.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_client::IngesterClient;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

use crate::Error;

/// Requests a client queues for one stream at most (the shard client has
/// at most 64 calls in flight, so writers rarely wait here).
const REQUEST_QUEUE: usize = 64;
/// Requests of one stream the server handles at once at most.
const SERVER_CONCURRENCY: usize = 256;
/// Answers of one stream waiting to be sent, at most.
const ANSWER_QUEUE: usize = 256;

type Answer = Result<pb::WriteResponse, Error>;

/// Write streams this process opened, to every shard
/// (`pharos_cluster_write_streams_opened_total`).
static OPENED: AtomicU64 = AtomicU64::new(0);

/// Write streams this process opened so far: one per shard client and
/// replica written to, plus one per reopen after a stream broke.
pub fn write_streams_opened_total() -> u64 {
    OPENED.load(Ordering::Relaxed)
}

/// Writes `pharos_cluster_write_streams_opened_total`, for a writer's `/metrics`.
pub fn write_stream_metrics(e: &mut pharos_exposition::Exposition) {
    e.counter(
        "pharos_cluster_write_streams_opened_total",
        "Write streams opened to ingesters: one per shard replica written to, plus one per reopen after a break.",
        write_streams_opened_total() as f64,
    );
}

/// Writers waiting for their answer on one open stream.
#[derive(Default)]
struct Pending {
    by_id: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the stream broke; no writer may register after that.
    broken: Option<String>,
}

/// One open stream: where requests go and who waits for answers.
struct Open {
    requests: mpsc::Sender<pb::WriteStreamRequest>,
    pending: Arc<Mutex<Pending>>,
}

/// The write stream to one replica, opened on first use and again after
/// it broke. See the module overview.
pub(crate) struct StreamClient {
    shard: u32,
    addr: String,
    client: IngesterClient<Channel>,
    current: tokio::sync::Mutex<Option<Arc<Open>>>,
    next_id: AtomicU64,
    /// Streams opened, counted across the shard's replicas.
    opened: Arc<AtomicU64>,
}

impl StreamClient {
    pub(crate) fn new(shard: u32, addr: &str, client: IngesterClient<Channel>, opened: Arc<AtomicU64>) -> Self {
        Self {
            shard,
            addr: addr.to_string(),
            client,
            current: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(0),
            opened,
        }
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::Unavailable { shard: self.shard, msg: format!("{}: write stream: {why}", self.addr) }
    }

    /// Sends one batch on the stream and waits for its answer.
    pub(crate) async fn write(&self, req: pb::WriteRequest) -> Answer {
        let open = self.stream().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = open.pending.lock();
            if let Some(why) = &pending.broken {
                return Err(self.unavailable(why));
            }
            pending.by_id.insert(id, tx);
        }
        // A writer given up on (the caller's attempt timed out) leaves no entry behind.
        let _registered = Registered { pending: &open.pending, id };
        if open.requests.send(pb::WriteStreamRequest { id, write: Some(req) }).await.is_err() {
            let why = "closed by the transport";
            open.pending.lock().broken.get_or_insert_with(|| why.to_string());
            return Err(self.unavailable(why));
        }
        rx.await.unwrap_or_else(|_| Err(self.unavailable("answer dropped")))
    }

    /// The open stream, opening one if there is none or it broke.
    async fn stream(&self) -> Result<Arc<Open>, Error> {
        let mut current = self.current.lock().await;
        if let Some(open) = current.as_ref().filter(|o| o.pending.lock().broken.is_none()) {
            return Ok(open.clone());
        }
        let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
        let answers = self
            .client
            .clone()
            .write_stream(ReceiverStream::new(rx))
            .await
            .map_err(|s| Error::from_status(self.shard, s))?
            .into_inner();
        OPENED.fetch_add(1, Ordering::Relaxed);
        let opened = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(shard = self.shard, replica = %self.addr, opened, "write stream opened");
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read_answers(self.shard, self.addr.clone(), answers, pending.clone()));
        let open = Arc::new(Open { requests, pending });
        *current = Some(open.clone());
        Ok(open)
    }
}

/// Removes a writer's entry from the pending map when it stops waiting.
struct Registered<'a> {
    pending: &'a Mutex<Pending>,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.pending.lock().by_id.remove(&self.id);
    }
}

/// Hands each answer to its writer until the stream ends, then fails every
/// writer still waiting.
async fn read_answers(
    shard: u32,
    addr: String,
    mut answers: tonic::Streaming<pb::WriteStreamResponse>,
    pending: Arc<Mutex<Pending>>,
) {
    let why = loop {
        match answers.message().await {
            Ok(Some(a)) => {
                let writer = pending.lock().by_id.remove(&a.id);
                if let Some(w) = writer {
                    let _ = w.send(decode(shard, a.result));
                }
            }
            Ok(None) => break "ended by the ingester".to_string(),
            Err(s) => break format!("broken: {}", s.message()),
        }
    };
    tracing::debug!(shard, replica = %addr, reason = %why, "write stream closed");
    let waiting = {
        let mut p = pending.lock();
        p.broken = Some(why.clone());
        std::mem::take(&mut p.by_id)
    };
    for w in waiting.into_values() {
        let _ = w.send(Err(Error::Unavailable { shard, msg: format!("{addr}: write stream {why}") }));
    }
}

fn decode(shard: u32, result: Option<pb::write_stream_response::Result>) -> Answer {
    use pb::write_stream_response::Result as R;
    match result {
        Some(R::Ok(resp)) => Ok(resp),
        Some(R::Error(e)) => Err(Error::from_write_error(shard, e)),
        None => Err(Error::Internal(format!("shard {shard}: a write stream answer without a result"))),
    }
}

/// The answers of one server-side stream.
pub(crate) type Answers = Pin<Box<dyn Stream<Item = Result<pb::WriteStreamResponse, Status>> + Send>>;

/// Serves one write stream: `write` handles each request's batch in a task
/// of its own (see the module overview). The answers end when the client
/// ends its requests and every one is answered, or at once when `closing`
/// turns true (the server shuts down; writers still waiting retry).
pub(crate) fn serve<W, F>(
    mut requests: tonic::Streaming<pb::WriteStreamRequest>,
    closing: watch::Receiver<bool>,
    write: W,
) -> Answers
where
    W: Fn(pb::WriteRequest) -> F + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ANSWER_QUEUE);
    let mut stop = closing.clone();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(SERVER_CONCURRENCY));
        let reading = async {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let req = match requests.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(s) => {
                        tracing::debug!(error = %s, "write stream ended by the client");
                        break;
                    }
                };
                let id = req.id;
                let handling = req.write.map(&write);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match handling {
                        Some(h) => h.await,
                        None => Err(Error::BadRequest(format!("write stream request {id} carries no write"))),
                    };
                    let result = match result {
                        Ok(resp) => pb::write_stream_response::Result::Ok(resp),
                        Err(e) => pb::write_stream_response::Result::Error(e.into()),
                    };
                    // A client gone meanwhile does not read it: nothing to do.
                    let _ = tx.send(Ok(pb::WriteStreamResponse { id, result: Some(result) })).await;
                    drop(slot);
                });
            }
        };
        // At shutdown the requests are dropped at once: the stream closes
        // even while every slot is taken.
        tokio::select! {
            _ = reading => {}
            _ = stop.wait_for(|c| *c) => {}
        }
    });
    let mut closed = closing;
    let closed = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    Box::pin(ReceiverStream::new(rx).take_until(closed))
}
