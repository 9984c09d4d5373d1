//! The `pharos bench` command line: flags parsed by clap, validated into the
//! drivers' typed configs, and run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::Error;

fn duration(s: &str) -> Result<Duration, String> {
    match pharos_model::parse_duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        Ok(_) => Err("must be positive".into()),
        Err(e) => Err(e),
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// `pharos bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Serve N synthetic node_exporter-like targets and print a prometheus.yml for them.
    Targets(TargetsArgs),
    /// Remote_write load at a fixed sample rate, recording acknowledged samples.
    Write(WriteArgs),
    /// A query mix from a file at a fixed rate, with latency percentiles per class.
    Query(QueryArgs),
    /// Read back every sample a `write` run had acknowledged.
    Verify(VerifyArgs),
    /// Render a comparison CSV (system,metric,value) as a markdown table and PNG charts.
    Chart(ChartArgs),
}

/// Flags shared by the subcommands that talk HTTP.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Extra request header, `Name: value` (repeatable), e.g. `X-Scope-OrgID: t1`.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TargetsArgs {
    /// Number of targets (consecutive ports from --listen-base).
    #[arg(long)]
    pub count: u16,
    #[arg(long, default_value_t = 1000)]
    pub series_per_target: u64,
    /// Address of the first target, e.g. 127.0.0.1:19100.
    #[arg(long)]
    pub listen_base: SocketAddr,
    /// Series each target replaces per minute (a new `cycle_id`).
    #[arg(long, default_value_t = 0)]
    pub churn_per_minute: u64,
    /// `job_name` in the printed prometheus.yml.
    #[arg(long, default_value = "pharos_bench_targets")]
    pub job: String,
    /// `scrape_interval` in the printed prometheus.yml.
    #[arg(long, default_value = "15s")]
    pub scrape_interval: String,
    /// Write the prometheus.yml to this file instead of stdout.
    #[arg(long)]
    pub config_out: Option<PathBuf>,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = duration)]
    pub duration: Option<Duration>,
    /// Seconds between progress lines.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub progress: Duration,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// The remote_write endpoint, e.g. http://127.0.0.1:9090/api/v1/write.
    #[arg(long)]
    pub url: String,
    /// Active series.
    #[arg(long)]
    pub series: u64,
    /// Samples per second over all series.
    #[arg(long)]
    pub rate: f64,
    #[arg(long, value_parser = duration)]
    pub duration: Duration,
    /// Series replaced per minute (a new `cycle_id` label value).
    #[arg(long, default_value_t = 0)]
    pub churn_per_minute: u64,
    /// Samples per request.
    #[arg(long, default_value_t = 2000)]
    pub batch: u64,
    /// Parallel senders (each owns a share of the series).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Record every acknowledged request here, for `verify`.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// The `job` label of the series.
    #[arg(long, default_value = "pharos_bench")]
    pub job: String,
    /// Series per `instance` label value.
    #[arg(long, default_value_t = 100)]
    pub series_per_instance: u64,
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub progress: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Base URL of a Prometheus-compatible API, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    pub url: String,
    /// The mix: `CLASS: QUERY` or `CLASS: range WINDOW [STEP]: QUERY` per line.
    #[arg(long)]
    pub queries: PathBuf,
    /// Queries per second.
    #[arg(long)]
    pub rate: f64,
    #[arg(long, value_parser = duration)]
    pub duration: Duration,
    /// Queries outstanding at most; more are skipped and counted.
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub progress: Duration,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Base URL of a Prometheus-compatible API.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub ack_log: PathBuf,
    /// Expected samples per read-back query at most.
    #[arg(long, default_value_t = 20_000)]
    pub max_samples_per_query: u64,
    /// Read-back queries in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct ChartArgs {
    /// Rows `system,metric,value` (a header line is optional).
    #[arg(long)]
    pub csv: PathBuf,
    /// The system the ratios are relative to (its name as in the CSV).
    #[arg(long, default_value = "prometheus")]
    pub baseline: String,
    /// Where the markdown table goes (default: stdout).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Directory for one PNG per metric (skipped if absent).
    #[arg(long)]
    pub png_dir: Option<PathBuf>,
    /// A TrueType font for the charts' text.
    #[arg(long, default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    pub font: PathBuf,
}

/// Runs one `pharos bench` subcommand.
pub async fn run(cmd: BenchCommand) -> Result<(), Error> {
    match cmd {
        BenchCommand::Targets(a) => {
            crate::targets::run(crate::targets::TargetsConfig {
                count: a.count,
                series_per_target: a.series_per_target,
                listen_base: a.listen_base,
                churn_per_minute: a.churn_per_minute,
                job: a.job,
                scrape_interval: a.scrape_interval,
                config_out: a.config_out,
                duration: a.duration,
                progress: a.progress,
                summary_json: a.summary_json,
            })
            .await?;
        }
        BenchCommand::Write(a) => {
            crate::write::run(crate::write::WriteConfig {
                url: a.url,
                series: a.series,
                rate: a.rate,
                duration_ms: ms(a.duration),
                churn_per_minute: a.churn_per_minute,
                batch: a.batch,
                concurrency: a.concurrency,
                series_per_instance: a.series_per_instance,
                job: a.job,
                ack_log: a.ack_log,
                headers: a.http.headers,
                timeout: a.http.timeout,
                progress: a.progress,
                summary_json: a.http.summary_json,
            })
            .await?;
        }
        BenchCommand::Query(a) => {
            crate::query::run(crate::query::QueryConfig {
                url: a.url,
                queries: a.queries,
                rate: a.rate,
                duration_ms: ms(a.duration),
                max_in_flight: a.max_in_flight,
                headers: a.http.headers,
                timeout: a.http.timeout,
                progress: a.progress,
                summary_json: a.http.summary_json,
            })
            .await?;
        }
        BenchCommand::Verify(a) => {
            crate::verify::run(crate::verify::VerifyConfig {
                url: a.url,
                ack_log: a.ack_log,
                max_samples: a.max_samples_per_query,
                concurrency: a.concurrency,
                headers: a.http.headers,
                timeout: a.http.timeout,
                summary_json: a.http.summary_json,
            })
            .await?;
        }
        BenchCommand::Chart(a) => {
            let text = std::fs::read_to_string(&a.csv)
                .map_err(|e| Error::Invalid(format!("--csv {}: {e}", a.csv.display())))?;
            let rows = crate::chart::parse_csv(&text)?;
            let md = crate::chart::markdown(&rows, &a.baseline);
            match &a.markdown {
                Some(p) => std::fs::write(p, &md)?,
                None => print!("{md}"),
            }
            if let Some(dir) = a.png_dir {
                let font = a.font;
                let written =
                    tokio::task::spawn_blocking(move || crate::chart::render_pngs(&rows, &a.baseline, &dir, &font))
                        .await
                        .map_err(|e| Error::Chart(e.to_string()))??;
                for p in written {
                    eprintln!("chart: wrote {}", p.display());
                }
            }
        }
    }
    Ok(())
}
