//! Pharos's load generator and benchmark tools, behind `pharos bench`:
//!
//! - [`targets`]: synthetic node_exporter-like exporters for scrapers;
//! - [`write`]: remote_write load at a fixed rate, recording what was
//!   acknowledged in an [`acklog`];
//! - [`query`]: a query mix at a fixed rate, latency percentiles per class;
//! - [`verify`]: reads back every acknowledged sample;
//! - [`chart`]: the comparison's results table and PNG charts.
//!
//! The decisions (series model, schedules, percentiles, verification plans)
//! are pure functions in [`model`], [`schedule`], [`stats`] and the planning
//! halves of the drivers; the network and the clock stay at the edges. The
//! crate never reads the system under test's internals: everything goes
//! through the public remote_write and query APIs, so the same load runs
//! against Prometheus and VictoriaMetrics.

pub mod acklog;
pub mod chart;
pub mod cli;
pub mod encode;
mod error;
pub mod http;
pub mod model;
pub mod query;
pub mod schedule;
pub mod stats;
pub mod targets;
pub mod verify;
pub mod write;

pub use cli::{BenchCommand, run};
pub use error::Error;

/// The (1-based number, trimmed text) of the lines of an input file that
/// are neither blank nor `#` comments.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Writes `value` as pretty JSON to `path` (the `--summary-json` files).
pub(crate) fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Invalid(format!("summary: {e}")))?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
