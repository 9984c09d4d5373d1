//! Conversions between the wire messages and the model.

use pharos_model::{Label, Labels, MatchOp, Matcher, Sample, Series};
use pharos_proto::pharos::v1 as pb;
use pharos_proto::prometheus as prom;
use pharos_storage::{MetaQuery, SeriesSamples};

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
