//! The multi-process cluster of the tests: `pharos cluster up` started one
//! way ([`cluster_up`]), and [`Cluster`], a replicated cluster with the
//! waits the fault tests need (leaders, convergence) and its logs on failure.

use std::path::Path;
use std::time::{Duration, Instant};

use pharos_cluster::{Endpoint, Topology};

use super::*;

/// `pharos cluster up --dir DIR ARGS`, once every process is ready; returns
/// the supervisor and `DIR/cluster.json`. The supervisor's log is in DIR.
pub fn cluster_up(dir: &Path, args: &[String]) -> (Proc, serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = pharos();
    cmd.args(["cluster", "up", "--dir"]).arg(dir).args(args);
    let mut sup = Proc::start(cmd, &dir.join(format!("supervisor-{}.log", now_ms())));
    let cj = wait_cluster_json(dir, &mut sup, 120);
    (sup, cj)
}

/// A topology of one unreplicated shard, `scrapers` scrapers, one querier
/// and the gateway on free loopback addresses, written to
/// `dir/topology.json`, for tests that start the roles themselves.
pub fn local_topology(dir: &Path, scrapers: u32) -> (Topology, std::path::PathBuf) {
    let topo =
        Topology::layout(1, 1, scrapers, 1, &free_addr(), || Ok::<_, std::convert::Infallible>(free_addr())).unwrap();
    let path = dir.join("topology.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&topo).unwrap()).unwrap();
    (topo, path)
}

/// An endpoint's base URL.
pub fn http(ep: &Endpoint) -> String {
    format!("http://{}", ep.http)
}

/// The gRPC address of replica `id` in the topology file `topo`, once written.
pub fn grpc_of(topo: &Path, id: &str) -> Option<String> {
    let t = Topology::load(topo).ok()?;
    t.shards.iter().flat_map(|s| &s.replicas).find(|r| r.id == id)?.grpc.clone()
}

pub struct Cluster {
    pub sup: Proc,
    pub dir: tempfile::TempDir,
    pub base: String,
    /// The `cluster up` arguments after `--dir DIR`, for a restart.
    args: Vec<String>,
}

impl Cluster {
    pub fn start(shards: u32) -> Cluster {
        Self::start_with(shards, tempfile::tempdir().unwrap(), &[])
    }

    /// `cluster up` in `dir` with `extra` arguments.
    pub fn start_with(shards: u32, dir: tempfile::TempDir, extra: &[&str]) -> Cluster {
        let addr = free_addr();
        let mut args: Vec<String> =
            ["--shards", &shards.to_string(), "--replication-factor", "3", "--listen", &addr].map(String::from).into();
        args.extend(extra.iter().map(|a| a.to_string()));
        let (sup, _) = cluster_up(dir.path(), &args);
        let c = Cluster { sup, dir, base: format!("http://{addr}"), args };
        c.leaders();
        c
    }

    /// One shard whose replicas reach each other's raft service only through
    /// a proxy (`cluster up --raft-routes`), which can cut a replica off.
    pub fn start_behind_proxy(extra: &[&str]) -> (Cluster, crate::common::proxy::Proxy) {
        let dir = tempfile::tempdir().unwrap();
        let topo = dir.path().join("topology.json");
        let proxy = crate::common::proxy::Proxy::start(&["ingester-0", "ingester-1", "ingester-2"], move |id| {
            grpc_of(&topo, id)
        });
        let routes = dir.path().join("raft-routes.json");
        std::fs::write(&routes, proxy.routes().to_string()).unwrap();
        let routes = routes.display().to_string();
        let mut args = extra.to_vec();
        args.extend(["--raft-routes", &routes]);
        (Cluster::start_with(1, dir, &args), proxy)
    }

    /// Waits until every shard has a leader.
    pub fn leaders(&self) {
        let shards = self.args[1].parse::<usize>().unwrap();
        for s in 0..shards {
            self.leader(s, None);
        }
    }

    /// The whole cluster, stopped (SIGTERM to the supervisor, which stops
    /// every process it started and removes `cluster.json`).
    pub fn stop(&mut self) {
        let status = self.sup.terminate();
        assert!(status.success(), "the supervisor exited with {status}:\n{}", self.sup.log());
        assert!(!self.dir.path().join("cluster.json").exists(), "cluster.json left behind after a clean stop");
    }

    /// Started again from the same directory, on the same public address.
    pub fn restart(&mut self) {
        self.sup = cluster_up(self.dir.path(), &self.args).0;
        self.leaders();
    }

    pub fn processes(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("cluster.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["processes"].as_array().unwrap().clone()
    }

    pub fn pid(&self, id: &str) -> u32 {
        self.processes().iter().find(|p| p["id"] == id).unwrap()["pid"].as_u64().unwrap() as u32
    }

    pub fn status(&self) -> serde_json::Value {
        get_json(&format!("{}/api/v1/status/cluster", self.base)).1
    }

    /// Waits until shard `shard` has a leader other than `not`; returns it.
    pub fn leader(&self, shard: usize, not: Option<&str>) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.status();
            if let Some(l) = st["data"]["shards"][shard]["leader"].as_str()
                && Some(l) != not
            {
                return l.to_string();
            }
            assert!(Instant::now() < deadline, "shard {shard} has no leader: {st}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every replica of every shard answers and has applied what its leader committed.
    pub fn converged(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.status();
            let ok = st["data"]["shards"].as_array().is_some_and(|shards| {
                shards.iter().all(|s| {
                    let commit = s["commit_index"].as_u64();
                    s["leader"].is_string()
                        && s["replicas"].as_array().unwrap().iter().all(|r| {
                            r["state"] != "unreachable" && commit.is_some() && r["applied_index"].as_u64() >= commit
                        })
                })
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "replicas did not converge: {st}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("logs")) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for (i, l) in lines.iter().enumerate().filter(|(_, l)| l.contains("panicked at")) {
                    let more = lines[i + 1..].iter().take(2).copied().collect::<Vec<_>>().join("\n");
                    out += &format!("PANIC in {}: {l}\n{more}\n", e.path().display());
                }
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out +=
                    &format!("--- {}\n{}\n", e.path().display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
        out
    }

    /// The topology `cluster up` wrote.
    pub fn topology(&self) -> Topology {
        Topology::load(&self.dir.path().join("topology.json")).unwrap()
    }

    pub fn data_dir(&self, id: &str) -> std::path::PathBuf {
        self.dir.path().join("data").join(id)
    }

    /// A new ingester `id` of shard 0, outside the supervisor, in a copy of
    /// the topology that lists it with the shard, once ready; with its gRPC
    /// and HTTP addresses. It waits to be added to the raft group.
    pub fn extra_ingester(&self, id: &str, args: &[&str]) -> (Proc, String, String) {
        let mut topo = self.topology();
        let (grpc, http) = (free_addr(), free_addr());
        topo.shards[0].replicas.push(Endpoint::new(id, Some(grpc.clone()), http.clone()));
        let topo_path = self.dir.path().join(format!("topology-with-{id}.json"));
        std::fs::write(&topo_path, serde_json::to_vec(&topo).unwrap()).unwrap();
        let mut cmd = pharos();
        cmd.args(["ingester", "--id", id, "--topology"])
            .arg(&topo_path)
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(args);
        let mut p = Proc::start(cmd, &self.dir.path().join("logs").join(format!("{id}.log")));
        wait_ready(&format!("http://{http}/-/ready"), 30, &mut p);
        (p, grpc, http)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pharos().args(["cluster", "down", "--dir"]).arg(self.dir.path()).output();
        let _ = self.sup.child.kill();
    }
}
