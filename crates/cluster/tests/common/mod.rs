//! Shared pieces of the cluster tests: a storage whose appends wait for a
//! gate, and an ingester gRPC server on 127.0.0.1 that a test can stop.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pharos_cluster::{LocalShard, serve_ingester};
use pharos_model::{Labels, Matcher, Series};
use pharos_raft::Replica;
use pharos_storage::{AppendResult, Error, MemStorage, MetaQuery, SeriesSamples, Storage};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A storage whose appends wait for a gate, counting how many wait at once.
#[derive(Default)]
pub struct Gated {
    pub inner: MemStorage,
    open: Mutex<bool>,
    opened: Condvar,
    inside: AtomicUsize,
    pub most_inside: AtomicUsize,
    pub entered: AtomicUsize,
}

impl Gated {
    /// A storage whose appends go through at once.
    pub fn opened() -> Self {
        let g = Self::default();
        g.open();
        g
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Storage for Gated {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.inner.append(tenant, batch)
    }
    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        self.inner.select(tenant, matchers, mint, maxt)
    }
    fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error> {
        self.inner.series(tenant, q)
    }
    fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.inner.label_names(tenant, q)
    }
    fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error> {
        self.inner.label_values(tenant, name, q)
    }
    fn flush(&self) -> Result<(), Error> {
        self.inner.flush()
    }
}

/// Opens the gate when dropped, so a failing test does not leave appends
/// waiting (the runtime waits for its blocking threads before it exits).
pub struct OpenOnDrop(pub Arc<Gated>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// An ingester gRPC server running in this process.
pub struct Server {
    pub addr: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), pharos_cluster::Error>>,
}

impl Server {
    /// Serves `storage` (through `replica` when given) on `listener`.
    pub fn start(listener: TcpListener, storage: Arc<dyn Storage>, replica: Option<Arc<Replica>>) -> Self {
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_ingester(listener, LocalShard::new(storage), replica, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    /// Serves `storage` on a fresh port of 127.0.0.1.
    pub async fn bind(storage: Arc<dyn Storage>) -> Self {
        Self::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), storage, None)
    }

    /// Shuts the server down and waits until it stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(20), self.task).await;
        stopped.expect("the server did not stop (an open stream held it?)").unwrap().unwrap();
    }
}

/// Waits until `f` holds, failing the test after 20 s.
pub async fn eventually(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
