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

#[cfg(test)]
mod tests {
    use super::*;

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
