//! Flags bounding what clients can make a process hold: its HTTP
//! listeners and remote_write decoding; and the file-descriptor limit
//! raised at start so the connection cap can be reached.

use std::time::Duration;

use clap::Args;
use pharos_api::{HttpLimits, IngestLimits};

/// Bounds of every HTTP listener of a process.
#[derive(Args, Clone)]
pub struct HttpArgs {
    /// Time a client has to send a request's headers, counted from when the
    /// connection awaits a request: also the keep-alive idle timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub http_header_read_timeout: Duration,
    /// Time a client has to send a request's whole body after its headers.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub http_body_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted. Lowered to
    /// what the open-files limit allows.
    #[arg(long, default_value_t = HttpLimits::default().max_connections)]
    pub http_max_connections: usize,
}

/// File descriptors kept for everything but HTTP connections (storage
/// files, gRPC, outgoing requests).
const RESERVED_FDS: u64 = 1024;

impl HttpArgs {
    /// The limits, the connection cap lowered to fit the open-files limit.
    pub fn limits(&self) -> HttpLimits {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(soft, _)| soft);
        let fit = match nofile {
            Ok(soft) => usize::try_from(soft.saturating_sub(RESERVED_FDS).max(64)).unwrap_or(usize::MAX),
            Err(_) => usize::MAX,
        };
        if self.http_max_connections > fit {
            tracing::warn!(
                requested = self.http_max_connections,
                allowed = fit,
                "--http-max-connections lowered to fit the open-files limit (RLIMIT_NOFILE)"
            );
        }
        HttpLimits {
            header_read_timeout: self.http_header_read_timeout,
            body_read_timeout: self.http_body_read_timeout,
            max_connections: self.http_max_connections.min(fit),
        }
    }

    /// The same flags for a child process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--http-header-read-timeout".into(),
            format!("{}ms", self.http_header_read_timeout.as_millis()),
            "--http-body-read-timeout".into(),
            format!("{}ms", self.http_body_read_timeout.as_millis()),
            "--http-max-connections".into(),
            self.http_max_connections.to_string(),
        ]
    }
}

/// Bounds of remote_write decoding.
#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Largest remote_write body after snappy decompression, checked
    /// against the length the body declares before decompressing (400 over
    /// it). The compressed body may be as large as snappy's worst case for it.
    #[arg(long, default_value_t = IngestLimits::default().max_decoded_bytes)]
    pub remote_write_max_decoded_bytes: usize,
    /// Most series in one remote_write request (400 over it).
    #[arg(long, default_value_t = IngestLimits::default().max_series_per_request)]
    pub remote_write_max_series_per_request: usize,
    /// Memory all remote_write requests being read and decoded at once may
    /// take; when spent, requests are answered 429 with Retry-After.
    #[arg(long, default_value_t = IngestLimits::default().decode_budget_bytes)]
    pub remote_write_decode_budget_bytes: usize,
}

impl IngestArgs {
    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            max_decoded_bytes: self.remote_write_max_decoded_bytes,
            max_series_per_request: self.remote_write_max_series_per_request,
            decode_budget_bytes: self.remote_write_decode_budget_bytes,
        }
    }

    /// The same flags for a child process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--remote-write-max-decoded-bytes".into(),
            self.remote_write_max_decoded_bytes.to_string(),
            "--remote-write-max-series-per-request".into(),
            self.remote_write_max_series_per_request.to_string(),
            "--remote-write-decode-budget-bytes".into(),
            self.remote_write_decode_budget_bytes.to_string(),
        ]
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match pharos_model::parse_duration_ms(s) {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        Ok(_) => Err("must be positive".into()),
        Err(e) => Err(e),
    }
}

/// Raises the soft open-files limit to the hard one, so the connection cap
/// and the storage's files fit; a failure is logged, not fatal.
pub fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}
