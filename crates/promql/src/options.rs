//! How the engine behaves: which Prometheus release it follows, and its limits.

use std::time::Duration;

/// Which Prometheus release the engine follows where releases disagree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compat {
    /// Prometheus 2.42: range selector, subquery and lookback windows are closed,
    /// `[t - range, t]`.
    #[default]
    Prometheus2,
    /// Prometheus 3.x: those windows are left-open, `(t - range, t]`.
    Prometheus3,
}

/// Engine semantics and limits. Exceeding a limit fails the query with a clear error
/// (Prometheus's wording where Prometheus has the limit) before memory runs out.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant vector selector looks for a sample (default 5m).
    pub lookback_delta_ms: i64,
    /// Which Prometheus release to follow (default [`Compat::Prometheus2`]).
    pub compat: Compat,
    /// The most samples a query may hold in memory at once (default 50M, Prometheus's
    /// `--query.max-samples`). Samples fetched from storage count too, since the
    /// engine holds them for the whole evaluation.
    pub max_samples: usize,
    /// The most series a query may fetch from storage, over all its selectors
    /// (0: no limit, the default, as in Prometheus).
    pub max_series: usize,
    /// Wall-clock limit of one query (default 2 minutes, Prometheus's `--query.timeout`).
    pub timeout: Duration,
    /// Queries evaluated at once (default 20, Prometheus's `--query.max-concurrency`);
    /// further queries wait for a slot rather than fail. The wait counts against the timeout.
    pub max_concurrent_queries: usize,
    /// The longest query text accepted, in bytes (default 256 KiB).
    pub max_query_length: usize,
    /// How deep a query's expression tree may be (default 1000): parentheses, calls,
    /// aggregations, subqueries and ranges each add a level, and so does every binary
    /// or unary operator (a chain `a or b or c` is as deep as it has operators).
    pub max_depth: usize,
    /// The largest compiled program of a regular expression in a matcher or
    /// `label_replace` (default 4 MiB, `regex::RegexBuilder::size_limit`).
    pub max_regex_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 300_000,
            compat: Compat::default(),
            max_samples: 50_000_000,
            max_series: 0,
            timeout: Duration::from_secs(120),
            max_concurrent_queries: 20,
            max_query_length: 256 << 10,
            max_depth: 1000,
            max_regex_bytes: 4 << 20,
        }
    }
}
