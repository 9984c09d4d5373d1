//! `pharos cluster up|down`: a real multi-process cluster on one machine.
//!
//! `up` lays out the topology (free loopback ports, ids `ingester-N`,
//! `scraper-N`, `querier-N`, `gateway`), writes `DIR/topology.json`, starts
//! every role as its own `pharos` process with its log in `DIR/logs/`,
//! waits until each answers `/-/ready`, then writes `DIR/cluster.json`. It
//! restarts a process that dies and stops them all on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pharos_cluster::{Endpoint, Topology};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::ClusterUpArgs;
use crate::roles::{bind, free_addr, shutdown_signal};

#[derive(Debug, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub role: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    pub http: String,
}

/// `DIR/cluster.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterFile {
    pub gateway: String,
    pub supervisor_pid: u32,
    pub processes: Vec<ProcessEntry>,
}

struct Proc {
    role: &'static str,
    id: String,
    shard: Option<u32>,
    grpc: Option<String>,
    http: String,
    args: Vec<String>,
    child: Child,
}

fn spawn(exe: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {} {}", exe.display(), args.join(" ")))
}

async fn wait_ready(http: &str, deadline: Instant) -> bool {
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{http}/-/ready")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub async fn up(a: ClusterUpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.shards >= 1, "--shards must be at least 1");
    anyhow::ensure!(a.scrapers >= 1 && a.queriers >= 1, "--scrapers and --queriers must be at least 1");
    anyhow::ensure!(
        (1..=7).contains(&a.replication_factor),
        "--replication-factor must be between 1 and 7 (3 survives one lost replica), got {}",
        a.replication_factor
    );
    if let Some(c) = &a.config {
        pharos_scrape::Config::load(c)?; // fail here, not in every scraper
    }
    // Check the public port first, so an occupied one fails before anything starts.
    drop(bind(&a.listen.to_string()).await?);
    let dir = &a.dir;
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Ok(text) = std::fs::read_to_string(dir.join("cluster.json"))
        && let Ok(f) = serde_json::from_str::<ClusterFile>(&text)
    {
        anyhow::ensure!(
            kill(Pid::from_raw(f.supervisor_pid as i32), None).is_err(),
            "a cluster is already running from {} (supervisor pid {}); stop it with `pharos cluster down --dir {}`",
            dir.display(),
            f.supervisor_pid,
            dir.display()
        );
    }
    let port = || free_addr().map(|a| a.to_string());
    let mut topo =
        Topology::layout(a.shards, a.replication_factor, a.scrapers, a.queriers, &a.listen.to_string(), port)?;
    if let Some(path) = &a.raft_routes {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read raft routes {}", path.display()))?;
        let routes =
            serde_json::from_str(&text).with_context(|| format!("raft routes {} are not valid", path.display()))?;
        topo.set_raft_routes(routes).with_context(|| format!("raft routes {}", path.display()))?;
    }
    let topo_path = dir.join("topology.json");
    std::fs::write(&topo_path, serde_json::to_vec_pretty(&topo)?)?;
    let exe = std::env::current_exe().context("cannot find the pharos executable")?;
    let me = std::process::id().to_string();
    let common = |role: &str, id: &str| -> Vec<String> {
        let mut args = vec![
            role.into(),
            "--id".into(),
            id.into(),
            "--topology".into(),
            topo_path.display().to_string(),
            "--parent-pid".into(),
            me.clone(),
        ];
        args.extend(a.http.to_args());
        args
    };
    let mut procs: Vec<Proc> = Vec::new();
    let mut plan_procs: Vec<(&'static str, Endpoint, Option<u32>, Vec<String>)> = Vec::new();
    for s in &topo.shards {
        for r in &s.replicas {
            let mut args = common("ingester", &r.id);
            args.extend(["--data-dir".into(), dir.join("data").join(&r.id).display().to_string()]);
            args.extend(["--retention".into(), format!("{}ms", a.storage.retention)]);
            args.extend(["--max-series-per-tenant".into(), a.storage.max_series_per_tenant.to_string()]);
            if a.storage.no_wal_sync {
                args.push("--no-wal-sync".into());
            }
            args.extend(a.raft.to_args());
            plan_procs.push(("ingester", r.clone(), Some(s.id), args));
        }
    }
    for s in &topo.scrapers {
        let mut args = common("scraper", &s.id);
        if let Some(c) = &a.config {
            let abs = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
            args.extend(["--config".into(), abs.display().to_string()]);
        }
        plan_procs.push(("scraper", s.clone(), None, args));
    }
    for q in &topo.queriers {
        let mut args = common("querier", &q.id);
        args.extend(["--read-replica".into(), a.read.read_replica.to_string()]);
        plan_procs.push(("querier", q.clone(), None, args));
    }
    let mut gateway = common("gateway", &topo.gateway.id);
    gateway.extend(a.ingest.to_args());
    plan_procs.push(("gateway", topo.gateway.clone(), None, gateway));
    let result = run(&a, &exe, &topo, plan_procs, &mut procs).await;
    stop_all(&mut procs).await;
    let _ = std::fs::remove_file(dir.join("cluster.json"));
    result
}

async fn run(
    a: &ClusterUpArgs,
    exe: &Path,
    topo: &Topology,
    plan_procs: Vec<(&'static str, Endpoint, Option<u32>, Vec<String>)>,
    procs: &mut Vec<Proc>,
) -> anyhow::Result<()> {
    let logs = a.dir.join("logs");
    for (role, ep, shard, args) in plan_procs {
        let child = spawn(exe, &args, &logs.join(format!("{}.log", ep.id)))?;
        procs.push(Proc { role, id: ep.id, shard, grpc: ep.grpc, http: ep.http, args, child });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in procs.iter_mut() {
        if !wait_ready(&p.http, deadline).await {
            let status = p.child.try_wait().ok().flatten();
            anyhow::bail!(
                "{} did not become ready ({}); see {}",
                p.id,
                status.map_or("still starting".to_string(), |s| s.to_string()),
                logs.join(format!("{}.log", p.id)).display()
            );
        }
    }
    write_cluster_file(&a.dir, topo, procs)?;
    tracing::info!(gateway = %format!("http://{}", topo.gateway.http), dir = %a.dir.display(), "cluster ready");
    let stop = shutdown_signal(None);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let mut changed = false;
        for p in procs.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                tracing::warn!(id = %p.id, %status, "process exited; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
                p.child = spawn(exe, &p.args, &logs.join(format!("{}.log", p.id)))?;
                changed = true;
            }
        }
        if changed {
            write_cluster_file(&a.dir, topo, procs)?;
        }
    }
}

fn write_cluster_file(dir: &Path, topo: &Topology, procs: &[Proc]) -> anyhow::Result<()> {
    let file = ClusterFile {
        gateway: format!("http://{}", topo.gateway.http),
        supervisor_pid: std::process::id(),
        processes: procs
            .iter()
            .map(|p| ProcessEntry {
                role: p.role.into(),
                id: p.id.clone(),
                shard: p.shard,
                pid: p.child.id().unwrap_or(0),
                grpc: p.grpc.clone(),
                http: format!("http://{}", p.http),
            })
            .collect(),
    };
    let tmp = dir.join("cluster.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)?;
    std::fs::rename(&tmp, dir.join("cluster.json"))?;
    Ok(())
}

/// SIGTERM to everyone, then SIGKILL to whoever is left after 10 s.
async fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        if let Some(pid) = p.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in procs.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, p.child.wait()).await.is_err() {
            tracing::warn!(id = %p.id, "did not stop in time; killing it");
            let _ = p.child.kill().await;
        }
    }
}

/// Whether `pid` runs (a zombie, exited but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
}

/// `pharos cluster down`: signals the supervisor and waits for it to finish;
/// if it is gone, stops the processes it left.
pub async fn down(dir: &Path) -> anyhow::Result<()> {
    let path: PathBuf = dir.join("cluster.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no running cluster in {} ({} is missing)", dir.display(), path.display()))?;
    let f: ClusterFile = serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    let sup = Pid::from_raw(f.supervisor_pid as i32);
    if alive(f.supervisor_pid) && kill(sup, Signal::SIGTERM).is_ok() {
        // The supervisor stops its processes, then exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(f.supervisor_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(!alive(f.supervisor_pid), "the supervisor (pid {}) did not stop within 30 s", f.supervisor_pid);
    } else {
        // The supervisor is gone (killed hard): stop what it left.
        for p in &f.processes {
            let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
        }
    }
    let _ = std::fs::remove_file(&path);
    println!("cluster in {} stopped", dir.display());
    Ok(())
}
