//! The append decision for one sample, and for the samples of one series,
//! as pure functions every engine shares.

use pharos_model::Sample;

/// What to do with an incoming sample given the newest stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Same timestamp and the same value bits: accepted, nothing to store.
    Duplicate,
    OutOfOrder,
    DuplicateTimestamp,
}

/// Samples of a series must arrive in time order. An exact duplicate of the
/// newest sample is dropped silently; anything else at or before it is
/// rejected. Older duplicates (behind the newest sample) count as out of
/// order: checking them would need a read of the chunk, and Prometheus
/// answers the same.
pub fn classify(last: Option<Sample>, s: Sample) -> Verdict {
    match last {
        None => Verdict::Append,
        Some(l) if s.t > l.t => Verdict::Append,
        Some(l) if s.t == l.t && s.v.to_bits() == l.v.to_bits() => Verdict::Duplicate,
        Some(l) if s.t == l.t => Verdict::DuplicateTimestamp,
        Some(_) => Verdict::OutOfOrder,
    }
}

/// The samples of one series that pass [`classify`] in order, the number of
/// exact duplicates, and one rejection per reason (count and first timestamp).
pub fn admit(
    labels: &pharos_model::Labels,
    mut last: Option<Sample>,
    samples: &[Sample],
) -> (Vec<Sample>, u64, Vec<crate::Rejection>) {
    let mut fresh = Vec::with_capacity(samples.len());
    let mut duplicates = 0;
    let mut rejected: Vec<crate::Rejection> = Vec::new();
    for &s in samples {
        let reason = match classify(last, s) {
            Verdict::Append => {
                fresh.push(s);
                last = Some(s);
                continue;
            }
            Verdict::Duplicate => {
                duplicates += 1;
                continue;
            }
            Verdict::OutOfOrder => crate::RejectReason::OutOfOrder,
            Verdict::DuplicateTimestamp => crate::RejectReason::DuplicateTimestamp,
        };
        match rejected.iter_mut().find(|r| r.reason == reason) {
            Some(r) => r.count += 1,
            None => rejected.push(crate::Rejection { labels: labels.clone(), reason, count: 1, first_t: s.t }),
        }
    }
    (fresh, duplicates, rejected)
}

/// The rejection of all samples of a series.
pub fn reject_all(s: &crate::SeriesSamples, reason: crate::RejectReason) -> crate::Rejection {
    crate::Rejection {
        labels: s.labels.clone(),
        reason,
        count: s.samples.len() as u64,
        first_t: s.samples.first().map_or(0, |x| x.t),
    }
}

/// Takes the samples newer than `max_t` out of `batch` (a series left
/// without samples goes), each series' share reported as one
/// [`crate::RejectReason::TooFarInFuture`] rejection. Decided once, where a
/// write enters the cluster, so every replica of a shard stores the same.
pub fn reject_future(batch: &mut Vec<crate::SeriesSamples>, max_t: i64) -> Vec<crate::Rejection> {
    let mut rejected = Vec::new();
    if batch.iter().all(|s| s.samples.iter().all(|x| x.t <= max_t)) {
        return rejected;
    }
    for s in batch.iter_mut() {
        let before = s.samples.len();
        let first = s.samples.iter().find(|x| x.t > max_t).map(|x| x.t);
        if let Some(first_t) = first {
            s.samples.retain(|x| x.t <= max_t);
            rejected.push(crate::Rejection {
                labels: s.labels.clone(),
                reason: crate::RejectReason::TooFarInFuture,
                count: (before - s.samples.len()) as u64,
                first_t,
            });
        }
    }
    batch.retain(|s| !s.samples.is_empty());
    rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_samples_are_taken_out_and_reported() {
        let series = |name: &str, ts: &[i64]| crate::SeriesSamples {
            labels: pharos_model::Labels::from_pairs(&[("__name__", name)]),
            samples: ts.iter().map(|t| Sample::new(*t, 1.0)).collect(),
        };
        let mut batch = vec![series("a", &[1, 2]), series("b", &[3, 1 << 62, 4]), series("c", &[1 << 62])];
        let rejected = reject_future(&mut batch, 100);
        assert_eq!(batch, vec![series("a", &[1, 2]), series("b", &[3, 4])]);
        let got: Vec<_> = rejected.iter().map(|r| (r.labels.metric_name(), r.count, r.first_t)).collect();
        assert_eq!(got, vec![(Some("b"), 1, 1 << 62), (Some("c"), 1, 1 << 62)]);
        assert!(rejected.iter().all(|r| r.reason == crate::RejectReason::TooFarInFuture));
        let mut fine = vec![series("a", &[100])];
        assert!(reject_future(&mut fine, 100).is_empty());
        assert_eq!(fine.len(), 1);
    }

    #[test]
    fn verdicts() {
        let l = Some(Sample::new(10, 1.0));
        assert_eq!(classify(None, Sample::new(0, 0.0)), Verdict::Append);
        assert_eq!(classify(l, Sample::new(11, 0.0)), Verdict::Append);
        assert_eq!(classify(l, Sample::new(10, 1.0)), Verdict::Duplicate);
        assert_eq!(classify(l, Sample::new(10, 2.0)), Verdict::DuplicateTimestamp);
        assert_eq!(classify(l, Sample::new(9, 1.0)), Verdict::OutOfOrder);
        let nan = Some(Sample::new(10, f64::NAN));
        assert_eq!(classify(nan, Sample::new(10, f64::NAN)), Verdict::Duplicate);
        assert_eq!(classify(nan, Sample::new(10, pharos_model::stale_nan())), Verdict::DuplicateTimestamp);
    }

    #[test]
    fn admit_keeps_order_and_counts_one_rejection_per_reason() {
        let labels = pharos_model::Labels::from_pairs(&[("__name__", "x")]);
        let s = |t, v| Sample::new(t, v);
        let (fresh, dups, rejected) =
            admit(&labels, Some(s(10, 1.0)), &[s(10, 1.0), s(10, 2.0), s(5, 0.0), s(11, 0.0), s(7, 0.0), s(11, 0.0)]);
        assert_eq!(fresh, vec![s(11, 0.0)]);
        assert_eq!(dups, 2);
        let got: Vec<_> = rejected.iter().map(|r| (r.reason, r.count, r.first_t)).collect();
        assert_eq!(
            got,
            vec![(crate::RejectReason::DuplicateTimestamp, 1, 10), (crate::RejectReason::OutOfOrder, 2, 5)]
        );
    }
}
