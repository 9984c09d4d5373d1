//! Conversions between the wire messages and the model.
//!
//! A write's answer names each rejected series by its position in the
//! request's batch, so the client maps rejections back in one pass; a
//! reason the client does not know is an error, never a guess.

use std::collections::HashMap;
use std::hash::BuildHasher;

use pharos_model::{Label, Labels, MatchOp, Matcher, Sample, Series};
use pharos_proto::pharos::v1 as pb;
use pharos_proto::prometheus as prom;
use pharos_storage::{AppendResult, MetaQuery, RejectReason, Rejection, SeriesSamples};

use crate::Error;

pub fn labels_from_proto(labels: Vec<prom::Label>) -> Labels {
    Labels::new(labels.into_iter().map(|l| Label { name: l.name, value: l.value }).collect())
}

pub fn labels_to_proto(labels: &Labels) -> Vec<prom::Label> {
    labels.iter().map(|l| prom::Label { name: l.name.clone(), value: l.value.clone() }).collect()
}

pub fn series_from_proto(ts: prom::TimeSeries) -> SeriesSamples {
    SeriesSamples {
        labels: labels_from_proto(ts.labels),
        samples: ts.samples.into_iter().map(|s| Sample::new(s.timestamp, s.value)).collect(),
    }
}

pub fn series_to_proto(labels: &Labels, samples: &[Sample]) -> prom::TimeSeries {
    prom::TimeSeries {
        labels: labels_to_proto(labels),
        samples: samples.iter().map(|s| prom::Sample { value: s.v, timestamp: s.t }).collect(),
    }
}

pub fn select_result_from_proto(ts: prom::TimeSeries) -> Series {
    let s = series_from_proto(ts);
    Series::new(s.labels, s.samples)
}

pub fn matchers_to_proto(ms: &[Matcher]) -> Vec<pb::LabelMatcher> {
    ms.iter()
        .map(|m| pb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => pb::label_matcher::Type::Eq,
                MatchOp::NotEqual => pb::label_matcher::Type::Neq,
                MatchOp::Regex => pb::label_matcher::Type::Re,
                MatchOp::NotRegex => pb::label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

pub fn matchers_from_proto(ms: &[pb::LabelMatcher]) -> Result<Vec<Matcher>, Error> {
    ms.iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::Regex,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::NotRegex,
                Err(_) => return Err(Error::BadRequest(format!("unknown matcher type {}", m.r#type))),
            };
            Matcher::new(op, &m.name, &m.value).map_err(|e| Error::BadRequest(e.to_string()))
        })
        .collect()
}

/// The metadata query a Series or Labels request carries (limit 0: none).
pub fn meta_query(matchers: Vec<Matcher>, start_ms: i64, end_ms: i64, limit: u64) -> MetaQuery {
    MetaQuery { matchers, mint: start_ms, maxt: end_ms, limit: usize::try_from(limit).unwrap_or(usize::MAX) }
}

pub(crate) fn reason_to_proto(r: RejectReason) -> pb::RejectReason {
    match r {
        RejectReason::OutOfOrder => pb::RejectReason::OutOfOrder,
        RejectReason::DuplicateTimestamp => pb::RejectReason::DuplicateTimestamp,
        RejectReason::InvalidLabels => pb::RejectReason::InvalidLabels,
        RejectReason::LabelTooLong => pb::RejectReason::LabelTooLong,
        RejectReason::SeriesLimit => pb::RejectReason::SeriesLimit,
        RejectReason::TooOld => pb::RejectReason::TooOld,
        RejectReason::TooFarInFuture => pb::RejectReason::TooFarInFuture,
    }
}

/// The reason of a rejection on the wire; `None` for one this build does
/// not know (or the unspecified zero).
pub(crate) fn reason_from_proto(r: i32) -> Option<RejectReason> {
    match pb::RejectReason::try_from(r).ok()? {
        pb::RejectReason::Unspecified => None,
        pb::RejectReason::OutOfOrder => Some(RejectReason::OutOfOrder),
        pb::RejectReason::DuplicateTimestamp => Some(RejectReason::DuplicateTimestamp),
        pb::RejectReason::InvalidLabels => Some(RejectReason::InvalidLabels),
        pb::RejectReason::LabelTooLong => Some(RejectReason::LabelTooLong),
        pb::RejectReason::SeriesLimit => Some(RejectReason::SeriesLimit),
        pb::RejectReason::TooOld => Some(RejectReason::TooOld),
        pb::RejectReason::TooFarInFuture => Some(RejectReason::TooFarInFuture),
    }
}

/// The series of a write request by position, kept while the batch itself
/// goes to storage: a 64-bit hash of each label set, so a rejection (which
/// carries its labels) is found again by a lookup. Hashing costs far less
/// than keeping a copy of every label set; two series of one batch with
/// the same hash (about n²/2⁶⁵ for n series) would name the first.
pub(crate) struct BatchPositions {
    hashes: Vec<u64>,
}

fn labels_hash(labels: &Labels) -> u64 {
    xxhash_rust::xxh3::Xxh3Builder::new().hash_one(labels)
}

impl BatchPositions {
    pub(crate) fn of(batch: &[SeriesSamples]) -> Self {
        Self { hashes: batch.iter().map(|s| labels_hash(&s.labels)).collect() }
    }

    /// The answer to the write: each rejection under its series' position.
    pub(crate) fn response(&self, res: AppendResult) -> Result<pb::WriteResponse, Error> {
        let mut first: HashMap<u64, u32> = HashMap::new();
        if !res.rejected.is_empty() {
            first.reserve(self.hashes.len());
            for (i, h) in self.hashes.iter().enumerate().rev() {
                first.insert(*h, i as u32);
            }
        }
        let rejected = res
            .rejected
            .into_iter()
            .map(|r| {
                let series_index = *first.get(&labels_hash(&r.labels)).ok_or_else(|| {
                    Error::Internal(format!("storage rejected series {} that the batch does not hold", r.labels))
                })?;
                Ok(pb::Rejection {
                    series_index,
                    reason: reason_to_proto(r.reason) as i32,
                    count: r.count,
                    first_timestamp: r.first_t,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(pb::WriteResponse { accepted: res.accepted, duplicates: res.duplicates, rejected })
    }
}

/// The result of writing `batch` to shard `shard`, from its answer: each
/// rejection's labels are the batch's at the position it names.
pub(crate) fn append_result_from_proto(
    shard: u32,
    resp: pb::WriteResponse,
    batch: &[SeriesSamples],
) -> Result<AppendResult, Error> {
    let rejected = resp
        .rejected
        .into_iter()
        .map(|r| {
            let series = batch.get(r.series_index as usize).ok_or_else(|| {
                Error::Internal(format!(
                    "shard {shard} rejected series {} of a batch of {}",
                    r.series_index,
                    batch.len()
                ))
            })?;
            let reason = reason_from_proto(r.reason).ok_or_else(|| {
                Error::Internal(format!("shard {shard} rejected samples for unknown reason {}", r.reason))
            })?;
            Ok(Rejection { labels: series.labels.clone(), reason, count: r.count, first_t: r.first_timestamp })
        })
        .collect::<Result<_, Error>>()?;
    Ok(AppendResult { accepted: resp.accepted, duplicates: resp.duplicates, rejected })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Vec<SeriesSamples> {
        ["a", "b", "c", "b"]
            .iter()
            .map(|n| SeriesSamples {
                labels: Labels::from_pairs(&[("__name__", *n)]),
                samples: vec![Sample::new(1, 1.0)],
            })
            .collect()
    }

    fn rejection(labels: &Labels, reason: RejectReason) -> Rejection {
        Rejection { labels: labels.clone(), reason, count: 2, first_t: 7 }
    }

    #[test]
    fn every_reason_crosses_the_wire() {
        for r in RejectReason::ALL {
            assert_eq!(reason_from_proto(reason_to_proto(r) as i32), Some(r));
        }
        assert_eq!(reason_from_proto(0), None);
        assert_eq!(reason_from_proto(99), None);
    }

    /// A result survives the trip (rejections by position, duplicates
    /// counted), in the order the storage reported it.
    #[test]
    fn append_results_round_trip() {
        let b = batch();
        let res = AppendResult {
            accepted: 5,
            duplicates: 3,
            rejected: vec![
                rejection(&b[2].labels, RejectReason::OutOfOrder),
                rejection(&b[1].labels, RejectReason::TooOld),
                rejection(&b[0].labels, RejectReason::SeriesLimit),
            ],
        };
        let resp = BatchPositions::of(&b).response(res.clone()).unwrap();
        let at: Vec<u32> = resp.rejected.iter().map(|r| r.series_index).collect();
        assert_eq!(at, [2, 1, 0]);
        assert_eq!(append_result_from_proto(0, resp, &b).unwrap(), res);
    }

    #[test]
    fn a_rejection_outside_the_batch_is_an_error() {
        let b = batch();
        let stranger = rejection(&Labels::from_pairs(&[("__name__", "z")]), RejectReason::OutOfOrder);
        let res = AppendResult { rejected: vec![stranger], ..AppendResult::default() };
        assert!(matches!(BatchPositions::of(&b).response(res), Err(Error::Internal(_))));
        let bad_index = pb::Rejection { series_index: 4, reason: 1, count: 1, first_timestamp: 0 };
        let resp = pb::WriteResponse { rejected: vec![bad_index], ..Default::default() };
        let e = append_result_from_proto(3, resp, &b).unwrap_err();
        assert!(e.to_string().contains("shard 3 rejected series 4 of a batch of 4"), "{e}");
    }

    #[test]
    fn an_unknown_reason_is_an_error_not_out_of_order() {
        let b = batch();
        for reason in [0, 42] {
            let r = pb::Rejection { series_index: 0, reason, count: 1, first_timestamp: 0 };
            let resp = pb::WriteResponse { rejected: vec![r], ..Default::default() };
            let e = append_result_from_proto(1, resp, &b).unwrap_err();
            assert!(e.to_string().contains(&format!("unknown reason {reason}")), "{e}");
            assert!(!e.retryable());
        }
    }
}
