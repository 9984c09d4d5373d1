//! Latency percentiles and error tallies, and how they are printed.

use std::collections::BTreeMap;

/// The nearest-rank percentile `q` (0..=100) of `sorted` (ascending).
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latencies (microseconds) and errors of one class of requests.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
}

/// Percentiles of a tally, in milliseconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl Tally {
    pub fn ok(&mut self, latency_us: u64) {
        self.latencies_us.push(latency_us);
    }

    /// A failed request, by kind (`http 503`, `timeout`, ...); its latency counts too.
    pub fn error(&mut self, kind: String, latency_us: u64) {
        self.latencies_us.push(latency_us);
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let ms = |q: f64| percentile(&v, q).map_or(0.0, |us| us as f64 / 1000.0);
        Summary {
            requests: v.len() as u64,
            errors: self.error_count(),
            p50_ms: ms(50.0),
            p90_ms: ms(90.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
            errors_by_kind: self.errors.clone(),
        }
    }
}

impl Summary {
    /// `p50 1.2 ms, p90 3.4 ms, p99 9.9 ms, max 12.0 ms`
    pub fn latency_line(&self) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }

    /// `none`, or `http 503 x2, timeout x1`
    pub fn errors_line(&self) -> String {
        if self.errors_by_kind.is_empty() {
            return "none".into();
        }
        self.errors_by_kind.iter().map(|(k, n)| format!("{k} x{n}")).collect::<Vec<_>>().join(", ")
    }
}

/// `1.2k`, `3.4M`: a count for progress lines.
pub fn si(n: f64) -> String {
    match n.abs() {
        x if x >= 1e9 => format!("{:.2}G", n / 1e9),
        x if x >= 1e6 => format!("{:.2}M", n / 1e6),
        x if x >= 1e4 => format!("{:.1}k", n / 1e3),
        _ => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 99.5), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 51.0), Some(3));
    }

    #[test]
    fn tally_summarises_in_milliseconds_and_counts_errors_by_kind() {
        let mut t = Tally::default();
        for us in [3000, 1000, 2000] {
            t.ok(us);
        }
        t.error("http 503".into(), 10_000);
        t.error("http 503".into(), 500);
        t.error("timeout".into(), 30_000_000);
        let s = t.summary();
        assert_eq!((s.requests, s.errors), (6, 3));
        assert_eq!((s.p50_ms, s.max_ms), (2.0, 30_000.0));
        assert_eq!(s.errors_line(), "http 503 x2, timeout x1");
        assert_eq!(Tally::default().summary().errors_line(), "none");
        assert!(s.latency_line().starts_with("p50 2.0 ms"));
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_500_000.0), "2.50M");
        assert_eq!(si(3e9), "3.00G");
    }
}
