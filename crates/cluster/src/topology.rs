//! The cluster's topology: which processes exist and where they listen.
//! `pharos cluster up` writes it to `DIR/topology.json`; every role reads
//! it with `--topology`. On Kubernetes it is a ConfigMap.
//!
//! This module owns the schema, its validation (errors name the bad field),
//! the naming of replicas (`ingester-N` is raft node N) and the layout of a
//! new cluster; it starts nothing and listens nowhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Cluster, Error, ReadReplica, RemoteShard, Shard};

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
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |msg: String| Error::InvalidTopology(format!("topology file {}: {msg}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let t: Topology = serde_json::from_str(&text).map_err(|e| bad(format!("not valid: {e}")))?;
        t.validate().map_err(|e| match e {
            Error::InvalidTopology(m) => bad(m),
            other => other,
        })?;
        Ok(t)
    }

    /// Checks what serde cannot: shard ids in order, replicas with a gRPC
    /// address, replicas of a raft group named `ingester-N`, raft routes to
    /// peers of the same shard.
    pub fn validate(&self) -> Result<(), Error> {
        let ensure = |ok: bool, msg: &dyn Fn() -> String| if ok { Ok(()) } else { Err(Error::InvalidTopology(msg())) };
        ensure(!self.shards.is_empty(), &|| "shards: at least one shard is needed".to_string())?;
        for (i, s) in self.shards.iter().enumerate() {
            ensure(s.id == i as u32, &|| format!("shards[{i}].id: expected {i}, got {}", s.id))?;
            ensure(!s.replicas.is_empty(), &|| format!("shards[{i}].replicas: at least one replica is needed"))?;
            for (j, r) in s.replicas.iter().enumerate() {
                ensure(r.grpc.is_some(), &|| format!("shards[{i}].replicas[{j}].grpc: missing"))?;
                ensure(s.replicas.len() < 2 || node_id(&r.id).is_some(), &|| {
                    format!(
                        "shards[{i}].replicas[{j}].id: a replica of a replicated shard is named ingester-N, got {:?}",
                        r.id
                    )
                })?;
                for peer in r.raft_routes.keys() {
                    ensure(s.replicas.iter().any(|p| p.id == *peer && p.id != r.id), &|| {
                        format!("shards[{i}].replicas[{j}].raft_routes: {peer:?} is not another replica of the shard")
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Sets the `raft_routes` of replicas: replica id → (peer id → address).
    pub fn set_raft_routes(&mut self, routes: BTreeMap<String, BTreeMap<String, String>>) -> Result<(), Error> {
        for (id, peers) in routes {
            let r = self
                .shards
                .iter_mut()
                .flat_map(|s| s.replicas.iter_mut())
                .find(|r| r.id == id)
                .ok_or_else(|| Error::InvalidTopology(format!("{id:?} is not a replica")))?;
            r.raft_routes = peers;
        }
        self.validate()
    }

    /// Lays out a new cluster (`pharos cluster up`): `shards` shards of
    /// `replication_factor` replicas named `ingester-0`, `ingester-1`, ...
    /// in shard order, then `scraper-N` and `querier-N`, each at the next
    /// address `port` hands out, and the gateway at `gateway`.
    pub fn layout<E>(
        shards: u32,
        replication_factor: u32,
        scrapers: u32,
        queriers: u32,
        gateway: &str,
        mut port: impl FnMut() -> Result<String, E>,
    ) -> Result<Self, E> {
        let mut shard_list = Vec::new();
        let mut n = 0;
        for s in 0..shards {
            let mut replicas = Vec::new();
            for _ in 0..replication_factor {
                let (grpc, http) = (Some(port()?), port()?);
                replicas.push(Endpoint::new(format!("ingester-{n}"), grpc, http));
                n += 1;
            }
            shard_list.push(ShardTopology { id: s, replicas });
        }
        let scrapers = (0..scrapers)
            .map(|i| Ok(Endpoint::new(format!("scraper-{i}"), None, port()?)))
            .collect::<Result<_, E>>()?;
        let queriers = (0..queriers)
            .map(|i| Ok(Endpoint::new(format!("querier-{i}"), None, port()?)))
            .collect::<Result<_, E>>()?;
        Ok(Topology { shards: shard_list, scrapers, queriers, gateway: Endpoint::new("gateway", None, gateway) })
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
    pub fn cluster(&self, read: ReadReplica) -> Result<Cluster, Error> {
        let mut shards: Vec<Arc<dyn Shard>> = Vec::new();
        for s in &self.shards {
            let replicas: Vec<(Option<u64>, String)> = s
                .replicas
                .iter()
                .map(|r| {
                    let grpc = r.grpc.clone().ok_or_else(|| {
                        Error::InvalidTopology(format!("shards[{}]: replica {:?} without grpc", s.id, r.id))
                    })?;
                    Ok((node_id(&r.id), grpc))
                })
                .collect::<Result<_, Error>>()?;
            let shard = RemoteShard::replicated(s.id, &replicas)?.with_read_replica(read);
            shards.push(Arc::new(shard));
        }
        Ok(Cluster::new(shards))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ports() -> impl FnMut() -> Result<String, std::convert::Infallible> {
        let mut p = 1000;
        move || {
            p += 1;
            Ok(format!("127.0.0.1:{p}"))
        }
    }

    #[test]
    fn layout_names_replicas_in_shard_order_and_validates() {
        let t = Topology::layout(2, 3, 1, 2, "127.0.0.1:9090", ports()).unwrap();
        let ids: Vec<Vec<&str>> = t.shards.iter().map(|s| s.replicas.iter().map(|r| r.id.as_str()).collect()).collect();
        assert_eq!(ids, [["ingester-0", "ingester-1", "ingester-2"], ["ingester-3", "ingester-4", "ingester-5"]]);
        assert_eq!(t.shards[1].replicas[0].grpc.as_deref(), Some("127.0.0.1:1007"));
        assert_eq!(t.queriers[1].id, "querier-1");
        assert_eq!(t.gateway.http, "127.0.0.1:9090");
        t.validate().unwrap();
        assert_eq!(t.all_http().len(), 6 + 1 + 2 + 1);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut t = Topology::layout(1, 3, 1, 1, "g:1", ports()).unwrap();
        t.shards[0].replicas[1].id = "replica-b".into();
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("shards[0].replicas[1].id"), "{e}");

        let mut t = Topology::layout(1, 1, 1, 1, "g:1", ports()).unwrap();
        t.shards[0].replicas[0].grpc = None;
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("shards[0].replicas[0].grpc"), "{e}");
    }

    #[test]
    fn raft_routes_go_only_to_other_replicas_of_the_shard() {
        let mut t = Topology::layout(2, 2, 1, 1, "g:1", ports()).unwrap();
        let route = |from: &str, to: &str| {
            BTreeMap::from([(from.to_string(), BTreeMap::from([(to.to_string(), "p:1".to_string())]))])
        };
        t.set_raft_routes(route("ingester-0", "ingester-1")).unwrap();
        assert_eq!(t.shards[0].replicas[0].raft_routes["ingester-1"], "p:1");
        let e = t.set_raft_routes(route("ingester-0", "ingester-2")).unwrap_err().to_string();
        assert!(e.contains("raft_routes"), "{e}");
        assert!(t.set_raft_routes(route("scraper-0", "ingester-1")).is_err());
    }

    #[test]
    fn replica_names_give_raft_node_ids() {
        assert_eq!(node_id("ingester-12"), Some(12));
        assert_eq!(node_id("ingester-"), None);
        assert_eq!(node_id("querier-1"), None);
    }
}
