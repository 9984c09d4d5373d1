//! Each role's wiring: open what it owns, build its routers, serve until
//! told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pharos_api::{Metrics, QueryState};
use pharos_cluster::{Cluster, Endpoint, LocalShard, ReadReplica, Topology};
use pharos_scrape::{Config, Scraper};
use pharos_tsdb::{RocksOptions, RocksStorage};
use tokio::net::TcpListener;

use crate::{GatewayArgs, IngesterArgs, QuerierArgs, ScraperArgs, StorageArgs, UpArgs};

/// How often heads are written to disk so the write-ahead log stays short.
const FLUSH_EVERY: Duration = Duration::from_secs(600);

pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// Resolves on SIGINT, SIGTERM, or when `parent` (the supervisor) is gone.
pub async fn shutdown_signal(parent: Option<u32>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let orphaned = async {
        match parent {
            Some(p) => loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if std::os::unix::process::parent_id() != p {
                    tracing::warn!("supervisor is gone; exiting");
                    break;
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = orphaned => {}
    }
    tracing::info!("shutting down");
}

/// Opens the TSDB in `dir`. A replica of a replicated shard keeps its raft
/// log and state in the same database, and the raft log is the TSDB's
/// write-ahead log (see `pharos_raft::state_machine`).
fn open_tsdb(dir: &std::path::Path, storage: &StorageArgs, replicated: bool) -> anyhow::Result<Arc<RocksStorage>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let opts = RocksOptions {
        retention_ms: Some(storage.retention),
        max_series_per_tenant: (storage.max_series_per_tenant > 0).then_some(storage.max_series_per_tenant),
        external_log: replicated,
        sync_writes: !storage.no_wal_sync,
        extra_column_families: match replicated {
            true => pharos_raft::store::COLUMN_FAMILIES.map(String::from).to_vec(),
            false => Vec::new(),
        },
        ..RocksOptions::default()
    };
    let s = RocksStorage::open(dir, opts).with_context(|| format!("cannot open the TSDB in {}", dir.display()))?;
    Ok(Arc::new(s))
}

/// The TSDB's own metrics, written by the engine (`RocksStorage::write_metrics`).
fn register_tsdb_metrics(metrics: &Metrics, tsdb: Arc<RocksStorage>) {
    metrics.register(move |e| tsdb.write_metrics(e));
}

fn register_scrape_metrics(metrics: &Metrics, scraper: &Scraper) {
    let (st, ds) = (scraper.stats(), scraper.delivery_stats());
    metrics.register(move |e| {
        st.write_metrics(e);
        ds.write_metrics(e);
    });
}

/// Every [`FLUSH_EVERY`]: drops data past retention, then flushes the
/// TSDB so the log stays short.
fn spawn_maintenance(tsdb: Arc<RocksStorage>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            let t = tsdb.clone();
            let work = move || {
                t.apply_retention(pharos_api::now_ms())?;
                pharos_storage::Storage::flush(&*t)
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "periodic flush failed"),
                Err(e) => tracing::error!(error = %e, "periodic flush task failed"),
            }
        }
    });
}

async fn flush_on_exit(tsdb: Arc<RocksStorage>) {
    match tokio::task::spawn_blocking(move || pharos_storage::Storage::flush(&*tsdb)).await {
        Ok(Ok(())) => tracing::info!("head flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "flush on exit failed"),
        Err(e) => tracing::error!(error = %e, "flush task failed"),
    }
}

fn query_state(cluster: Arc<Cluster>, metrics: Arc<Metrics>) -> QueryState {
    QueryState { cluster, engine: Arc::new(pharos_promql::Engine::default()), metrics }
}

/// `pharos up`: every role in this process.
pub async fn up(a: UpArgs) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::self_scrape(vec![a.listen.to_string()]),
    };
    let listener = bind(&a.listen.to_string()).await?;
    let tsdb = open_tsdb(&a.data_dir, &a.storage, false)?;
    let metrics = Metrics::new();
    register_tsdb_metrics(&metrics, tsdb.clone());
    let cluster = Arc::new(Cluster::new(vec![Arc::new(LocalShard::new(tsdb.clone()))]));
    let topo = Topology::embedded(&a.listen.to_string());
    let status = move || topo.status();
    let scraper = Arc::new(Scraper::start(&config, &[], "scraper-0", cluster.clone()));
    register_scrape_metrics(&metrics, &scraper);
    let reload = crate::reload::start(a.config.clone(), scraper.clone(), &metrics);
    let router = pharos_api::write_routes(cluster.clone(), metrics.clone(), a.ingest.limits())
        .merge(pharos_api::reload_routes(reload))
        .merge(pharos_api::query_routes(query_state(cluster.clone(), metrics.clone())))
        .merge(pharos_api::status_routes(Arc::new(status)))
        .merge(pharos_api::targets_routes(pharos_api::TargetsSource::local(scraper.clone(), "scraper-0")))
        .merge(pharos_api::common_routes(metrics.clone()));
    spawn_maintenance(tsdb.clone());
    tracing::info!(listen = %a.listen, data_dir = %a.data_dir.display(), "pharos up: every role in one process");
    pharos_api::serve(listener, router, &a.http.limits(), shutdown_signal(None)).await.context("HTTP server")?;
    scraper.stop();
    flush_on_exit(tsdb).await;
    Ok(())
}

fn find<'a>(eps: &'a [Endpoint], id: &str) -> Option<&'a Endpoint> {
    eps.iter().find(|e| e.id == id)
}

pub async fn ingester(a: IngesterArgs) -> anyhow::Result<()> {
    let topo = Topology::load(&a.role.topology)?;
    let me = topo
        .shards
        .iter()
        .flat_map(|s| s.replicas.iter())
        .find(|r| r.id == a.role.id)
        .with_context(|| format!("ingester {:?} is not in the topology", a.role.id))?
        .clone();
    let grpc_addr = me.grpc.clone().context("ingester without a grpc address")?;
    let grpc = bind(&grpc_addr).await?;
    let http = bind(&me.http).await?;
    let replicated = topo.shards.iter().any(|s| s.replicas.len() > 1 && s.replicas.iter().any(|r| r.id == a.role.id));
    let tsdb = open_tsdb(&a.data_dir, &a.storage, replicated)?;
    let metrics = Metrics::new();
    register_tsdb_metrics(&metrics, tsdb.clone());
    spawn_maintenance(tsdb.clone());
    let replica =
        pharos_cluster::start_replica(&topo, &a.role.id, &a.data_dir, tsdb.clone(), |o| a.raft.apply(o)).await?;
    if let Some(r) = replica.clone() {
        metrics.register(move |e| r.status().write_metrics(e));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut rx2 = rx.clone();
    let shard = LocalShard::new(tsdb.clone());
    let grpc_task = tokio::spawn(pharos_cluster::serve_ingester(grpc, shard, replica.clone(), async move {
        let _ = rx2.changed().await;
    }));
    let router = pharos_api::common_routes(metrics);
    let parent = a.role.parent_pid;
    pharos_api::serve(http, router, &a.role.http.limits(), async move {
        shutdown_signal(parent).await;
        let _ = tx.send(true);
    })
    .await?;
    drop(rx);
    match grpc_task.await {
        Ok(r) => r?,
        Err(e) => anyhow::bail!("gRPC task: {e}"),
    }
    if let Some(r) = replica {
        r.shutdown().await;
    }
    flush_on_exit(tsdb).await;
    Ok(())
}

pub async fn querier(q: QuerierArgs) -> anyhow::Result<()> {
    let a = q.role;
    let topo = Topology::load(&a.topology)?;
    let me = find(&topo.queriers, &a.id).with_context(|| format!("querier {:?} is not in the topology", a.id))?;
    let http = bind(&me.http).await?;
    let metrics = Metrics::new();
    tracing::info!(read_replica = %q.read.read_replica, "querier reads");
    let cluster = Arc::new(topo.cluster(q.read.read_replica)?);
    let router = pharos_api::query_routes(query_state(cluster, metrics.clone()))
        .merge(pharos_api::status_routes(pharos_cluster::status::provider(topo.clone())))
        .merge(pharos_api::common_routes(metrics));
    pharos_api::serve(http, router, &a.http.limits(), shutdown_signal(a.parent_pid)).await?;
    Ok(())
}

pub async fn gateway(g: GatewayArgs) -> anyhow::Result<()> {
    let a = g.role;
    let topo = Topology::load(&a.topology)?;
    anyhow::ensure!(topo.gateway.id == a.id, "gateway {:?} is not in the topology", a.id);
    let http = bind(&topo.gateway.http).await?;
    let metrics = Metrics::new();
    metrics.register(pharos_cluster::write_stream_metrics);
    let cluster = Arc::new(topo.cluster(ReadReplica::Leader)?);
    let queriers = topo.queriers.iter().map(|q| format!("http://{}", q.http)).collect();
    let scrapers = topo.scrapers.iter().map(|s| format!("http://{}", s.http)).collect();
    let router = pharos_api::write_routes(cluster, metrics.clone(), g.ingest.limits())
        .merge(pharos_api::proxy_routes(queriers).context("gateway query proxy")?)
        .merge(pharos_api::targets_routes(pharos_api::TargetsSource::remote(scrapers)))
        .merge(pharos_api::status_routes(pharos_cluster::status::provider(topo.clone())))
        .merge(pharos_api::common_routes(metrics));
    pharos_api::serve(http, router, &a.http.limits(), shutdown_signal(a.parent_pid)).await?;
    Ok(())
}

pub async fn scraper(a: ScraperArgs) -> anyhow::Result<()> {
    let topo = Topology::load(&a.role.topology)?;
    let me =
        find(&topo.scrapers, &a.role.id).with_context(|| format!("scraper {:?} is not in the topology", a.role.id))?;
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::self_scrape(topo.all_http()),
    };
    let http = bind(&me.http).await?;
    let metrics = Metrics::new();
    metrics.register(pharos_cluster::write_stream_metrics);
    let cluster = Arc::new(topo.cluster(ReadReplica::Leader)?);
    let members = match a.kubernetes_members.member_pods() {
        Some(pods) => {
            tracing::info!(selector = %pods.selector, "scraper membership from the Kubernetes API");
            pharos_scrape::kubernetes::members::watch_members(&a.role.id, pods, Duration::from_secs(10)).await
        }
        None => {
            let peers = topo.scrapers.iter().map(|s| (s.id.clone(), format!("http://{}", s.http))).collect();
            pharos_scrape::membership::Membership::start(&a.role.id, peers).await.watch()
        }
    };
    let scraper = Arc::new(Scraper::start_with_members(&config, members, &a.role.id, cluster));
    register_scrape_metrics(&metrics, &scraper);
    let reload = crate::reload::start(a.config.clone(), scraper.clone(), &metrics);
    let router = pharos_api::targets_routes(pharos_api::TargetsSource::local(scraper.clone(), &a.role.id))
        .merge(pharos_api::reload_routes(reload))
        .merge(pharos_api::common_routes(metrics));
    let leaving = scraper.clone();
    let parent = a.role.parent_pid;
    pharos_api::serve(http, router, &a.role.http.limits(), async move {
        shutdown_signal(parent).await;
        // Hand the targets over before going: peers see the 503 on their
        // next check and start scraping while this one still does.
        leaving.leave();
        tokio::time::sleep(pharos_scrape::membership::CHECK_EVERY * 3).await;
    })
    .await?;
    scraper.stop();
    Ok(())
}

/// Used by the supervisor: a loopback port free now, for a child to bind.
///
/// Port 0 would give one from the kernel's ephemeral range, which outgoing
/// connections also take their local ports from: one could take the port
/// between this check and the child's bind. So the port is chosen below
/// that range (`ip_local_port_range`), at random, and checked free; port 0
/// is the fallback.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    if low > 10_000 {
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32)
            | 1;
        for _ in 0..64 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = 10_000 + (x % u64::from(low - 10_000)) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Ok(l.local_addr()?);
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?)
}
