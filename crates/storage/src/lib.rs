//! The storage contract of one shard replica, and nothing that implements
//! it on disk.
//!
//! [`Storage`] is what every layer above writes to and reads from: append a
//! batch of series samples, select series by matchers in a time range, and
//! answer the metadata calls (series, label names, label values) for a
//! [`MetaQuery`] of matchers, time range and limit. Engines implement it and
//! pass one shared suite ([`conformance`]):
//!
//! - `pharos_tsdb::RocksStorage`, the real engine (RocksDB), in its own
//!   crate: this one never depends on RocksDB.
//! - [`MemStorage`]: a small, obviously-correct engine for tests and as the
//!   reference the real one is checked against.
//!
//! The same contract appears twice more, shaped for its callers:
//! `pharos_cluster::Shard` is [`Storage`] made async and reachable over the
//! network (same method names and arguments; its local form only runs these
//! calls on a blocking thread), and `pharos_promql::Queryable` is the
//! read-only view of one tenant that the PromQL engine evaluates over (the
//! API binds a tenant to the cluster's shards to make one).
//!
//! The append decision for single samples is a pure function here
//! ([`classify`], [`admit`]), shared by every engine. This crate does no
//! I/O of its own, never talks to the network and never spawns tasks.

mod check;
pub mod conformance;
mod error;
mod mem;
mod meta;

pub use check::{Verdict, admit, classify, reject_all, reject_future};
pub use error::Error;
pub use mem::MemStorage;
pub use meta::MetaQuery;

use pharos_model::{Labels, Matcher, Sample, Series};

/// The samples of one series in an append batch, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Why samples were not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the newest sample already stored for the series.
    OutOfOrder,
    /// Same timestamp as a stored sample, different value.
    DuplicateTimestamp,
    /// The label set is not valid (empty, no metric name, bad name).
    InvalidLabels,
    /// A label name or value is longer than the configured limit.
    LabelTooLong,
    /// The tenant already has its limit of active series.
    SeriesLimit,
    /// Older than the retention period.
    TooOld,
    /// Newer than the wall clock allows (its grace period, see
    /// [`reject_future`]): one such sample would make every real one after
    /// it out of order.
    TooFarInFuture,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::OutOfOrder,
        RejectReason::DuplicateTimestamp,
        RejectReason::InvalidLabels,
        RejectReason::LabelTooLong,
        RejectReason::SeriesLimit,
        RejectReason::TooOld,
        RejectReason::TooFarInFuture,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The value of the `reason` label on the rejected-samples metric.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::InvalidLabels => "invalid_labels",
            RejectReason::LabelTooLong => "label_too_long",
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::TooOld => "too_old",
            RejectReason::TooFarInFuture => "too_far_in_future",
        }
    }

    /// Prometheus's wording of the error.
    pub fn message(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out of order sample",
            RejectReason::DuplicateTimestamp => "duplicate sample for timestamp",
            RejectReason::InvalidLabels => "invalid labels",
            RejectReason::LabelTooLong => "label name or value too long",
            RejectReason::SeriesLimit => "per-tenant limit of active series reached",
            RejectReason::TooOld => "sample is older than the retention period",
            RejectReason::TooFarInFuture => "sample timestamp is too far in the future",
        }
    }
}

/// Samples of one series that were rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub labels: Labels,
    pub reason: RejectReason,
    pub count: u64,
    /// Timestamp of the first rejected sample.
    pub first_t: i64,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} sample(s), first at {} ms, for series {}",
            self.reason.message(),
            self.count,
            self.first_t,
            self.labels
        )
    }
}

/// What an append did: every sample is either accepted (stored or an exact
/// duplicate of a stored one) or rejected with a reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendResult {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
}

impl AppendResult {
    pub fn merge(&mut self, other: AppendResult) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected.extend(other.rejected);
    }
}

/// The storage contract. Every call is synchronous and may block on disk.
pub trait Storage: Send + Sync {
    /// Appends samples. Returns once accepted samples are durable; rejected
    /// samples are reported, never silently dropped or rewritten.
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error>;

    /// Series of `tenant` matching every matcher, with their samples in
    /// `[mint, maxt]`; series without samples there are left out.
    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;

    /// Sorted label sets of the series matching the query (see [`MetaQuery`]).
    fn series(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<Labels>, Error>;

    /// Sorted label names of the series matching the query.
    fn label_names(&self, tenant: &str, q: &MetaQuery) -> Result<Vec<String>, Error>;

    /// Sorted values of one label of the series matching the query.
    fn label_values(&self, tenant: &str, name: &str, q: &MetaQuery) -> Result<Vec<String>, Error>;

    /// Makes everything appended so far part of the on-disk state, so the
    /// write-ahead log can be trimmed.
    fn flush(&self) -> Result<(), Error>;
}

/// Checks a label set before a series is created: non-empty, with a metric
/// name, valid label names.
pub fn validate_labels(labels: &Labels) -> bool {
    labels.metric_name().is_some()
        && labels.iter().all(|l| {
            let mut chars = l.name.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}
