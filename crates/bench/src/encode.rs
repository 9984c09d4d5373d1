//! A remote_write 1.0 body (snappy-compressed protobuf) for one request of
//! the plan, built from the series model.

use pharos_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

use crate::acklog::Header;
use crate::model;
use crate::schedule::Request;

/// The full, sorted label set of series (`slot`, `generation`) in a run.
pub fn series_labels(h: &Header, slot: u64, generation: u64) -> Vec<Label> {
    let mut out: Vec<Label> = model::labels(slot, generation)
        .into_iter()
        .map(|(name, value)| Label { name: name.to_string(), value })
        .collect();
    out.push(Label { name: "__name__".into(), value: model::family(slot).name.into() });
    out.push(Label { name: "job".into(), value: h.job.clone() });
    out.push(Label { name: "instance".into(), value: h.instance(slot) });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The time series of `req`: one per series and generation (churn may
/// replace a series between two intervals of one request).
pub fn timeseries(h: &Header, req: &Request) -> Vec<TimeSeries> {
    let mut out = Vec::with_capacity((req.hi - req.lo) as usize);
    for slot in req.lo..req.hi {
        let mut current: Option<(u64, Vec<Sample>)> = None;
        for k in req.k0..req.k1 {
            let t = h.timestamp(k);
            let g = h.churn.generation(slot, h.series, t);
            let sample = Sample { value: model::value(slot, g, t), timestamp: t };
            match &mut current {
                Some((cg, samples)) if *cg == g => samples.push(sample),
                _ => {
                    if let Some((cg, samples)) = current.take() {
                        out.push(TimeSeries { labels: series_labels(h, slot, cg), samples });
                    }
                    current = Some((g, vec![sample]));
                }
            }
        }
        if let Some((cg, samples)) = current {
            out.push(TimeSeries { labels: series_labels(h, slot, cg), samples });
        }
    }
    out
}

/// The snappy-compressed protobuf body of `req`.
pub fn body(h: &Header, req: &Request) -> Vec<u8> {
    let wr = WriteRequest { timeseries: timeseries(h, req), metadata: vec![] };
    let raw = wr.encode_to_vec();
    // The raw snappy encoder fails only on inputs over 4 GiB; a request is
    // at most `--batch` samples.
    snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Churn;

    fn header(churn: u64) -> Header {
        Header {
            job: "bench".into(),
            series: 4,
            series_per_instance: 2,
            start_ms: 1_800_000_000_000,
            interval_ms: 15_000,
            intervals: 8,
            churn: Churn { per_minute: churn, start_ms: 1_800_000_000_000 },
        }
    }

    #[test]
    fn body_decodes_to_the_model_samples() {
        let h = header(0);
        let req = Request { lo: 1, hi: 3, k0: 2, k1: 5, block: 0, send_at_ms: 0 };
        let raw = snap::raw::Decoder::new().decompress_vec(&body(&h, &req)).unwrap();
        let wr = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(wr.timeseries.len(), 2);
        let ts = &wr.timeseries[1];
        let get = |n: &str| ts.labels.iter().find(|l| l.name == n).map(|l| l.value.clone());
        assert_eq!(get("__name__").as_deref(), Some("node_memory_MemAvailable_bytes"));
        assert_eq!(get("instance").as_deref(), Some("host-1:9100"));
        assert_eq!(get("series_id").as_deref(), Some("2"));
        assert!(ts.labels.windows(2).all(|w| w[0].name < w[1].name));
        let want: Vec<(i64, f64)> = (2..5).map(|k| (h.timestamp(k), model::value(2, 0, h.timestamp(k)))).collect();
        let got: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn churn_inside_a_request_splits_the_series() {
        // 4 replacements a minute over 4 slots: every slot is replaced once a minute.
        let h = header(4);
        let req = Request { lo: 0, hi: 1, k0: 0, k1: 8, block: 0, send_at_ms: 0 };
        let ts = timeseries(&h, &req);
        assert_eq!(ts.len(), 3, "slot 0 is replaced at 15 s and at 75 s");
        let lens: Vec<usize> = ts.iter().map(|t| t.samples.len()).collect();
        assert_eq!(lens, vec![1, 4, 3]);
        assert_ne!(ts[0].labels, ts[1].labels);
    }
}
