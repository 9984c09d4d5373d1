//! When each remote_write request is sent and what it carries.
//!
//! Every series gets one sample per *interval* (`series / rate` seconds),
//! stamped at the interval's start, like a scrape. An interval's series are
//! cut into requests of `batch` samples sent evenly spread over the interval;
//! when there are fewer series than `batch`, one request carries several
//! intervals instead. A request is therefore a rectangle: series `lo..hi` x
//! intervals `k0..k1`, which is also what the ack log records.

use crate::Error;

/// A validated write workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WritePlan {
    pub series: u64,
    pub interval_ms: i64,
    /// Total intervals of the run.
    pub intervals: u64,
    pub series_per_request: u64,
    pub intervals_per_request: u64,
}

/// One request of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub lo: u64,
    pub hi: u64,
    pub k0: u64,
    pub k1: u64,
    /// Block index (which series range) — requests of one block go through
    /// one sender, in order, so no series is ever sent out of order.
    pub block: u64,
    /// When to send it, relative to the run's start.
    pub send_at_ms: i64,
}

impl Request {
    pub fn samples(&self) -> u64 {
        (self.hi - self.lo) * (self.k1 - self.k0)
    }
}

impl WritePlan {
    /// `rate` samples/s over `series` series for `duration_ms`, `batch`
    /// samples per request.
    pub fn new(series: u64, rate: f64, duration_ms: i64, batch: u64) -> Result<WritePlan, Error> {
        if series == 0 || batch == 0 || duration_ms <= 0 {
            return Err(Error::Invalid("--series, --batch and --duration must be positive".into()));
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Invalid(format!("--rate must be a positive number, not {rate}")));
        }
        let interval_ms = (series as f64 * 1000.0 / rate).round() as i64;
        if interval_ms < 1 {
            return Err(Error::Invalid(format!(
                "--rate {rate} over {series} series is more than one sample per series per millisecond"
            )));
        }
        let (series_per_request, intervals_per_request) =
            if series >= batch { (batch, 1) } else { (series, (batch / series).max(1)) };
        let intervals = ((duration_ms / interval_ms) as u64).max(1);
        Ok(WritePlan { series, interval_ms, intervals, series_per_request, intervals_per_request })
    }

    /// Samples per second the plan actually produces (the interval is whole ms).
    pub fn effective_rate(&self) -> f64 {
        self.series as f64 * 1000.0 / self.interval_ms as f64
    }

    pub fn total_samples(&self) -> u64 {
        self.series * self.intervals
    }

    pub fn blocks(&self) -> u64 {
        self.series.div_ceil(self.series_per_request)
    }

    /// Every request, in the order (and at the offsets) they are sent.
    pub fn requests(&self) -> impl Iterator<Item = Request> + '_ {
        let blocks = self.blocks();
        let step = self.intervals_per_request;
        (0..self.intervals.div_ceil(step)).flat_map(move |g| {
            let k0 = g * step;
            let k1 = (k0 + step).min(self.intervals);
            (0..blocks).map(move |b| Request {
                lo: b * self.series_per_request,
                hi: ((b + 1) * self.series_per_request).min(self.series),
                k0,
                k1,
                block: b,
                send_at_ms: (k1 as i64 - 1) * self.interval_ms + b as i64 * self.interval_ms / blocks as i64,
            })
        })
    }

    /// The timestamp of interval `k` for a run that started at `start_ms`.
    pub fn timestamp(start_ms: i64, interval_ms: i64, k: u64) -> i64 {
        start_ms + k as i64 * interval_ms
    }
}

/// Offsets (ms from the start) of `rate` events per second for `duration_ms`.
pub fn uniform_offsets(rate: f64, duration_ms: i64) -> impl Iterator<Item = i64> {
    let n = if rate > 0.0 && duration_ms > 0 { (rate * duration_ms as f64 / 1000.0).floor() as u64 } else { 0 };
    (0..n).map(move |i| (i as f64 * 1000.0 / rate).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_series_one_interval_per_request_spread_over_the_interval() {
        let p = WritePlan::new(1000, 1000.0, 10_000, 300).unwrap();
        assert_eq!((p.interval_ms, p.intervals, p.blocks()), (1000, 10, 4));
        let reqs: Vec<Request> = p.requests().collect();
        assert_eq!(reqs.len(), 40);
        assert_eq!(reqs.iter().map(Request::samples).sum::<u64>(), p.total_samples());
        assert_eq!(p.total_samples(), 10_000);
        assert_eq!((reqs[3].lo, reqs[3].hi, reqs[3].send_at_ms), (900, 1000, 750));
        assert_eq!((reqs[4].k0, reqs[4].send_at_ms), (1, 1000));
        assert!(reqs.windows(2).all(|w| w[0].send_at_ms <= w[1].send_at_ms));
        // Never sent before its samples' timestamp.
        assert!(reqs.iter().all(|r| r.send_at_ms >= (r.k1 as i64 - 1) * p.interval_ms));
    }

    #[test]
    fn few_series_several_intervals_per_request() {
        let p = WritePlan::new(10, 100.0, 5_000, 35).unwrap();
        assert_eq!((p.interval_ms, p.intervals, p.intervals_per_request), (100, 50, 3));
        let reqs: Vec<Request> = p.requests().collect();
        assert_eq!(reqs.len(), 17);
        assert_eq!((reqs[16].k0, reqs[16].k1), (48, 50));
        assert_eq!(reqs.iter().map(Request::samples).sum::<u64>(), 500);
        assert_eq!(reqs[0].send_at_ms, 200);
    }

    #[test]
    fn rate_is_rounded_to_whole_milliseconds_and_validated() {
        let p = WritePlan::new(3, 7.0, 60_000, 10).unwrap();
        assert_eq!(p.interval_ms, 429);
        assert!((p.effective_rate() - 6.993).abs() < 0.001);
        assert!(WritePlan::new(1, 5000.0, 1000, 1).is_err());
        assert!(WritePlan::new(0, 1.0, 1000, 1).is_err());
        assert!(WritePlan::new(10, f64::NAN, 1000, 1).is_err());
        assert_eq!(WritePlan::timestamp(1000, 429, 2), 1858);
    }

    #[test]
    fn uniform_offsets_spread_events_evenly() {
        let v: Vec<i64> = uniform_offsets(4.0, 1000).collect();
        assert_eq!(v, vec![0, 250, 500, 750]);
        assert_eq!(uniform_offsets(0.5, 10_000).count(), 5);
        assert_eq!(uniform_offsets(0.0, 10_000).count(), 0);
    }
}
