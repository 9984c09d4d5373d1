//! The cluster's topology: which processes exist and where they listen.
//! `pharos cluster up` writes it to `DIR/topology.json`; every role reads
//! it with `--topology`. On Kubernetes it is a ConfigMap.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub id: String,
    /// host:port of the gRPC server (ingesters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// host:port of the HTTP server.
    pub http: String,
    /// Replicas of a raft group only: where this replica sends its raft
    /// RPCs for a peer (by id), when not to the peer's `grpc` address, e.g.
    /// through a proxy or a NAT. Clients and the status page still use
    /// `grpc`. Empty by default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raft_routes: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint without raft routes.
    pub fn new(id: impl Into<String>, grpc: Option<String>, http: impl Into<String>) -> Self {
        Self { id: id.into(), grpc, http: http.into(), raft_routes: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardTopology {
    pub id: u32,
    /// Replicas. With more than one the shard is a raft group, which the
    /// first replica forms on its first start; the leader is elected.
    pub replicas: Vec<Endpoint>,
}

/// The raft node id of a replica: N of `ingester-N`.
pub fn node_id(replica: &str) -> Option<u64> {
    replica.strip_prefix("ingester-")?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Topology {
    pub shards: Vec<ShardTopology>,
    pub scrapers: Vec<Endpoint>,
    pub queriers: Vec<Endpoint>,
    pub gateway: Endpoint,
}

impl Topology {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read topology file {}", path.display()))?;
        let t: Topology =
            serde_json::from_str(&text).with_context(|| format!("topology file {} is not valid", path.display()))?;
        t.validate().with_context(|| format!("topology file {}", path.display()))?;
        Ok(t)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.shards.is_empty(), "shards: at least one shard is needed");
        for (i, s) in self.shards.iter().enumerate() {
            anyhow::ensure!(s.id == i as u32, "shards[{i}].id: expected {i}, got {}", s.id);
            anyhow::ensure!(!s.replicas.is_empty(), "shards[{i}].replicas: at least one replica is needed");
            for (j, r) in s.replicas.iter().enumerate() {
                anyhow::ensure!(r.grpc.is_some(), "shards[{i}].replicas[{j}].grpc: missing");
                anyhow::ensure!(
                    s.replicas.len() < 2 || node_id(&r.id).is_some(),
                    "shards[{i}].replicas[{j}].id: a replica of a replicated shard is named ingester-N, got {:?}",
                    r.id
                );
                for peer in r.raft_routes.keys() {
                    anyhow::ensure!(
                        s.replicas.iter().any(|p| p.id == *peer && p.id != r.id),
                        "shards[{i}].replicas[{j}].raft_routes: {peer:?} is not another replica of the shard"
                    );
                }
            }
        }
        Ok(())
    }

    /// Sets the `raft_routes` of replicas: replica id → (peer id → address).
    pub fn set_raft_routes(&mut self, routes: BTreeMap<String, BTreeMap<String, String>>) -> anyhow::Result<()> {
        for (id, peers) in routes {
            let r = self
                .shards
                .iter_mut()
                .flat_map(|s| s.replicas.iter_mut())
                .find(|r| r.id == id)
                .with_context(|| format!("{id:?} is not a replica"))?;
            r.raft_routes = peers;
        }
        self.validate()
    }

    /// `pharos up`: every role is this one process at `listen`.
    pub fn embedded(listen: &str) -> Self {
        let ep = |id: &str| Endpoint::new(id, None, listen);
        Topology {
            shards: vec![ShardTopology { id: 0, replicas: vec![ep("ingester-0")] }],
            scrapers: vec![ep("scraper-0")],
            queriers: vec![ep("querier-0")],
            gateway: ep("gateway"),
        }
    }

    /// `/api/v1/status/cluster` data.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "shards": self.shards.iter().map(|s| serde_json::json!({
                "id": s.id,
                "leader": s.replicas.first().map(|r| r.id.clone()),
                "replicas": s.replicas.iter().map(|r| serde_json::json!({
                    "id": r.id, "grpc": r.grpc, "http": format!("http://{}", r.http),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "scrapers": self.scrapers.iter().map(|s| serde_json::json!({"id": s.id, "http": format!("http://{}", s.http)})).collect::<Vec<_>>(),
            "queriers": self.queriers.iter().map(|s| serde_json::json!({"id": s.id, "http": format!("http://{}", s.http)})).collect::<Vec<_>>(),
            "gateway": {"id": self.gateway.id, "http": format!("http://{}", self.gateway.http)},
        })
    }

    /// A remote client for every shard, which finds and follows the leader
    /// of a replicated one; its reads go to the replicas `read` says.
    pub fn cluster(&self, read: pharos_cluster::ReadReplica) -> anyhow::Result<pharos_cluster::Cluster> {
        let mut shards: Vec<std::sync::Arc<dyn pharos_cluster::Shard>> = Vec::new();
        for s in &self.shards {
            let replicas: Vec<(Option<u64>, String)> = s
                .replicas
                .iter()
                .map(|r| Ok((node_id(&r.id), r.grpc.clone().context("replica without grpc")?)))
                .collect::<anyhow::Result<_>>()?;
            let shard = pharos_cluster::RemoteShard::replicated(s.id, &replicas)?.with_read_replica(read);
            shards.push(std::sync::Arc::new(shard));
        }
        Ok(pharos_cluster::Cluster::new(shards))
    }

    /// Every process's HTTP address, for the default self-scrape.
    pub fn all_http(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shards.iter().flat_map(|s| s.replicas.iter().map(|r| r.http.clone())).collect();
        v.extend(self.scrapers.iter().map(|s| s.http.clone()));
        v.extend(self.queriers.iter().map(|s| s.http.clone()));
        v.push(self.gateway.http.clone());
        v
    }
}
