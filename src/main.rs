//! `pharos`: the one binary. It parses the command line and wires the
//! crates into a role; it decides nothing itself.

mod limits;
mod reload;
mod replication;
mod roles;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the ingest path allocates per series
/// and per label (protobuf decode, batches), and malloc/free was about a
/// quarter of ingest CPU in a profile (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pharos", version, about = "A sharded, replicated, Prometheus-compatible monitoring cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: one shard, replication factor 1.
    Up(UpArgs),
    /// A multi-process cluster on this machine.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// One replica of one shard: the TSDB behind a gRPC service.
    Ingester(IngesterArgs),
    /// PromQL over every shard, serving the Prometheus query API.
    Querier(QuerierArgs),
    /// The public endpoint: remote_write in, the query API out.
    Gateway(GatewayArgs),
    /// Scrapes the targets this scraper owns and writes to the shards.
    Scraper(ScraperArgs),
    /// Administration of a running cluster.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Load generator and benchmark tools: targets, write, query, verify, chart.
    #[command(subcommand)]
    Bench(pharos_bench::BenchCommand),
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add a replica to a shard's raft group (learner, catch up, voter).
    AddReplica {
        /// gRPC address (host:port) of any replica of the shard.
        #[arg(long)]
        via: String,
        /// The new replica's id, `ingester-N`.
        #[arg(long)]
        id: String,
        /// Its gRPC address.
        #[arg(long)]
        grpc: String,
    },
    /// Remove a replica from a shard's raft group.
    RemoveReplica {
        /// gRPC address (host:port) of any replica of the shard.
        #[arg(long)]
        via: String,
        /// The replica's id, `ingester-N`.
        #[arg(long)]
        id: String,
    },
    /// Print one replica's raft status as JSON.
    ReplicaStatus {
        /// Its gRPC address.
        #[arg(long)]
        grpc: String,
    },
}

#[derive(Args)]
pub struct UpArgs {
    /// Where the TSDB lives.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// A prometheus.yml whose scrape_configs are scraped; without it Pharos scrapes itself.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub http: limits::HttpArgs,
    #[command(flatten)]
    pub ingest: limits::IngestArgs,
}

/// Flags of the TSDB.
#[derive(Args, Clone)]
pub struct StorageArgs {
    /// How long samples are kept (Prometheus duration, e.g. 15d, 36h).
    #[arg(long, default_value = "15d", value_parser = parse_retention)]
    pub retention: i64,
    /// Active series one tenant may have (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_series_per_tenant: usize,
    /// Acknowledge writes before the write-ahead log (or raft log) is synced
    /// to disk: cheaper, but a power loss can lose acknowledged samples (a
    /// killed process loses nothing either way). For benchmarks.
    #[arg(long)]
    pub no_wal_sync: bool,
}

fn parse_retention(s: &str) -> Result<i64, String> {
    match pharos_model::parse_duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(ms),
        Ok(_) => Err("retention must be positive".into()),
        Err(e) => Err(e),
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Start a cluster in the foreground until SIGINT/SIGTERM.
    Up(Box<ClusterUpArgs>),
    /// Stop the cluster started in DIR.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
pub struct ClusterUpArgs {
    /// Holds every process's data, logs, topology.json and cluster.json.
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Replicas per shard; with more than one each shard is a raft group.
    /// 1 gives unreplicated shards.
    #[arg(long, default_value_t = 3)]
    pub replication_factor: u32,
    #[arg(long, default_value_t = 1)]
    pub scrapers: u32,
    #[arg(long, default_value_t = 1)]
    pub queriers: u32,
    /// The gateway's HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// A prometheus.yml for the scrapers; without it they scrape the cluster itself.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub raft: replication::RaftArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub http: limits::HttpArgs,
    #[command(flatten)]
    pub ingest: limits::IngestArgs,
    /// A JSON file `{replica id: {peer id: address}}`: where each replica
    /// sends its raft RPCs for a peer instead of the peer's gRPC address
    /// (the topology's `raft_routes`), e.g. through a fault-injecting proxy.
    #[arg(long)]
    pub raft_routes: Option<PathBuf>,
}

#[derive(Args)]
pub struct RoleArgs {
    /// This process's id in the topology.
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub topology: PathBuf,
    /// Exit when this process (the supervisor) is gone.
    #[arg(long)]
    pub parent_pid: Option<u32>,
    #[command(flatten)]
    pub http: limits::HttpArgs,
}

#[derive(Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    #[command(flatten)]
    pub ingest: limits::IngestArgs,
}

#[derive(Args)]
pub struct QuerierArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// Flags of a querier's reads.
#[derive(Args, Clone, Copy)]
pub struct ReadArgs {
    /// Which replica of a replicated shard answers the querier's reads:
    /// `leader` (after its ReadIndex check), or `follower`: any replica in
    /// turn, a follower after getting the leader's read index and applying
    /// it. Both see every acknowledged write.
    #[arg(long, default_value_t = pharos_cluster::ReadReplica::Leader)]
    pub read_replica: pharos_cluster::ReadReplica,
}

#[derive(Args)]
pub struct IngesterArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    #[arg(long)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub raft: replication::RaftArgs,
}

#[derive(Args)]
pub struct ScraperArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub kubernetes_members: KubernetesMembersArgs,
}

/// Scraper membership from the Kubernetes API instead of the topology's
/// static peer list: the ready pods matching a label selector (the
/// scraper StatefulSet), named as the scrapers' `--id`s.
#[derive(Args)]
pub struct KubernetesMembersArgs {
    /// Label selector of the scraper pods, e.g. `app.kubernetes.io/name=pharos-scraper`.
    #[arg(long)]
    pub members_selector: Option<String>,
    /// Namespace of the scraper pods (default: this pod's own).
    #[arg(long, requires = "members_selector")]
    pub members_namespace: Option<String>,
    /// A kubeconfig file to reach the API server (default: the in-cluster service account).
    #[arg(long, requires = "members_selector")]
    pub members_kubeconfig: Option<PathBuf>,
}

impl KubernetesMembersArgs {
    pub fn member_pods(&self) -> Option<pharos_scrape::kubernetes::members::MemberPods> {
        let selector = self.members_selector.clone()?;
        Some(pharos_scrape::kubernetes::members::MemberPods {
            access: pharos_scrape::kubernetes::client::ApiAccess {
                kubeconfig_file: self.members_kubeconfig.clone(),
                ..Default::default()
            },
            namespace: self.members_namespace.clone(),
            selector,
        })
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,h2=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    limits::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Up(a) => roles::up(a).await,
            Command::Cluster(ClusterCommand::Up(a)) => supervisor::up(*a).await,
            Command::Cluster(ClusterCommand::Down { dir }) => supervisor::down(&dir).await,
            Command::Ingester(a) => roles::ingester(a).await,
            Command::Querier(a) => roles::querier(a).await,
            Command::Gateway(a) => roles::gateway(a).await,
            Command::Scraper(a) => roles::scraper(a).await,
            Command::Admin(c) => replication::admin(c).await,
            Command::Bench(c) => pharos_bench::run(c).await.map_err(anyhow::Error::from),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
