//! An in-process [`Transport`] for tests: replicas of one process call each
//! other's raft directly, through the same serialization as over gRPC, and
//! a test can cut a replica off from the others (a partition) and heal it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Error;
use crate::network::{RpcKind, Transport, handle_rpc};
use crate::types::{Member, NodeId, Raft};

/// The replicas of a test and which of them are cut off.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<HashMap<NodeId, Raft>>,
    isolated: Mutex<HashSet<NodeId>>,
}

impl Router {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The transport replica `from` sends through.
    pub fn transport(self: &Arc<Self>, from: NodeId) -> Arc<dyn Transport> {
        Arc::new(RouterClient { router: self.clone(), from })
    }

    pub fn register(&self, id: NodeId, raft: Raft) {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).insert(id, raft);
    }

    pub fn unregister(&self, id: NodeId) {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Cuts `id` off from every other replica, both ways.
    pub fn isolate(&self, id: NodeId) {
        self.isolated.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
    }

    pub fn heal(&self, id: NodeId) {
        self.isolated.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }
}

struct RouterClient {
    router: Arc<Router>,
    from: NodeId,
}

#[async_trait::async_trait]
impl Transport for RouterClient {
    async fn call(
        &self,
        target: NodeId,
        _member: &Member,
        kind: RpcKind,
        body: Vec<u8>,
        _timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let cut = {
            let iso = self.router.isolated.lock().unwrap_or_else(PoisonError::into_inner);
            iso.contains(&self.from) || iso.contains(&target)
        };
        let raft = self.router.nodes.lock().unwrap_or_else(PoisonError::into_inner).get(&target).cloned();
        match raft {
            Some(raft) if !cut => handle_rpc(&raft, kind, &body).await,
            _ => Err(Error::Unreachable(format!("node {target}"))),
        }
    }
}
