//! Bounded decoding of remote_write bodies.
//!
//! A remote_write body is snappy-compressed protobuf; a small body can
//! declare or expand to a huge one. Decoding is bounded at every step,
//! before the memory is taken:
//!
//! 1. the compressed body is at most [`IngestLimits::max_body_bytes`]
//!    (a body whose snappy block decodes within the decoded limit always is);
//! 2. the length the snappy block declares is checked against
//!    [`IngestLimits::max_decoded_bytes`] before decompressing;
//! 3. the protobuf is [`scan`]ned without allocating: the series, labels,
//!    samples and native histograms are counted, over
//!    [`IngestLimits::max_series_per_request`] is refused;
//! 4. the memory the decoded request will take is reserved from a
//!    per-process [`DecodeBudget`]; when it is spent the caller answers 429,
//!    which Prometheus retries.
//!
//! Series whose labels Prometheus would refuse (an empty or duplicate label
//! name) are taken out with Prometheus's wording; native histograms, which
//! Pharos does not store yet, are named, and the float samples beside them
//! stored.

use std::sync::Arc;

use pharos_proto::prometheus::{Label, TimeSeries, WriteRequest};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-request and per-process bounds on remote_write decoding.
#[derive(Clone, Debug)]
pub struct IngestLimits {
    /// Largest decoded (snappy-uncompressed) body.
    pub max_decoded_bytes: usize,
    /// Most `TimeSeries` in one request.
    pub max_series_per_request: usize,
    /// Bytes all requests being decoded at once may take.
    pub decode_budget_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self { max_decoded_bytes: 64 << 20, max_series_per_request: 1_000_000, decode_budget_bytes: 1 << 30 }
    }
}

impl IngestLimits {
    /// The largest compressed body: what the largest decodable body takes
    /// in snappy's worst case, so a body within the decoded limit is never
    /// refused for its compressed size.
    pub fn max_body_bytes(&self) -> usize {
        snap::raw::max_compress_len(self.max_decoded_bytes).max(self.max_decoded_bytes)
    }
}

/// Why a body was not decoded.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Malformed or over a per-request limit: 400.
    BadRequest(String),
    /// The decode budget is spent for now: 429, retried later.
    Busy(String),
}

/// Budget granularity: permits are KiB so any budget fits a semaphore.
const UNIT: usize = 1024;

/// The bytes every remote_write being decoded in this process may take.
#[derive(Clone)]
pub struct DecodeBudget {
    sem: Arc<Semaphore>,
    units: usize,
}

impl DecodeBudget {
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self { sem: Arc::new(Semaphore::new(units)), units }
    }

    /// Bytes not reserved now.
    pub fn available_bytes(&self) -> usize {
        self.sem.available_permits() * UNIT
    }

    /// An empty reservation to [`Reservation::grow_to`].
    pub fn reservation(&self) -> Reservation {
        Reservation { budget: self.clone(), held: Vec::new(), units: 0 }
    }
}

/// Bytes reserved from a [`DecodeBudget`] until dropped.
pub struct Reservation {
    budget: DecodeBudget,
    held: Vec<OwnedSemaphorePermit>,
    units: usize,
}

impl Reservation {
    /// Holds at least `bytes`: 400 if the whole budget is smaller, 429 if
    /// it is spent by others for now.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), Refusal> {
        let want = bytes.div_ceil(UNIT);
        if want <= self.units {
            return Ok(());
        }
        if want > self.budget.units {
            return Err(Refusal::BadRequest(format!(
                "decoding this remote_write request takes about {bytes} bytes, more than the whole decode budget \
                 of {} bytes (--remote-write-decode-budget-bytes)",
                self.budget.units * UNIT
            )));
        }
        let extra = u32::try_from(want - self.units).unwrap_or(u32::MAX);
        match self.budget.sem.clone().try_acquire_many_owned(extra) {
            Ok(p) => {
                self.held.push(p);
                self.units += extra as usize;
                Ok(())
            }
            Err(_) => Err(Refusal::Busy(format!(
                "remote_write decode budget of {} bytes is in use (--remote-write-decode-budget-bytes); retry later",
                self.budget.units * UNIT
            ))),
        }
    }
}

/// What [`scan`] counted in a `WriteRequest`.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub series: usize,
    pub labels: usize,
    pub samples: usize,
    /// Native histograms of each series, by series index (empty if none).
    pub histograms: Vec<(usize, usize)>,
}

impl Counts {
    /// Bytes the decoded request takes beyond its `raw` protobuf: the
    /// structs, each label's two strings, and the copy made for storage.
    pub fn footprint(&self, raw: usize) -> usize {
        let series = self.series.saturating_mul(2 * std::mem::size_of::<TimeSeries>());
        let labels = self.labels.saturating_mul(2 * (std::mem::size_of::<Label>() + 16));
        let samples = self.samples.saturating_mul(2 * 16);
        raw.saturating_add(series).saturating_add(labels).saturating_add(samples)
    }
}

/// Protobuf field numbers of prompb's `WriteRequest` and `TimeSeries`.
const WRITE_REQUEST_TIMESERIES: u64 = 1;
const TIMESERIES_LABELS: u64 = 1;
const TIMESERIES_SAMPLES: u64 = 2;
const TIMESERIES_HISTOGRAMS: u64 = 4;

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Walks one protobuf message, calling `f(field, payload)` for each
/// length-delimited field and skipping the others; `None` if malformed.
fn fields(mut buf: &[u8], mut f: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut buf)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let payload = buf.get(..len)?;
                f(key >> 3, payload)?;
                len
            }
            5 => 4,
            _ => return None,
        };
        buf = buf.get(skip..)?;
    }
    Some(())
}

/// Counts what a `WriteRequest` holds without decoding it, refusing more
/// than `max_series` series as soon as one more is seen.
pub fn scan(raw: &[u8], max_series: usize) -> Result<Counts, Refusal> {
    let mut c = Counts::default();
    let mut over = false;
    let ok = fields(raw, |field, series| {
        if field != WRITE_REQUEST_TIMESERIES {
            return Some(());
        }
        if c.series == max_series {
            over = true;
            return None;
        }
        let mut histograms = 0;
        fields(series, |f, _| {
            match f {
                TIMESERIES_LABELS => c.labels += 1,
                TIMESERIES_SAMPLES => c.samples += 1,
                TIMESERIES_HISTOGRAMS => histograms += 1,
                _ => {}
            }
            Some(())
        })?;
        if histograms > 0 {
            c.histograms.push((c.series, histograms));
        }
        c.series += 1;
        Some(())
    });
    match (ok, over) {
        (_, true) => Err(Refusal::BadRequest(format!(
            "remote_write request has more than {max_series} series (--remote-write-max-series-per-request)"
        ))),
        (None, false) => Err(Refusal::BadRequest("protobuf decode of the remote_write body failed".into())),
        (Some(()), false) => Ok(c),
    }
}

/// A decoded request: the series to store, and what was refused or
/// dropped in it, one line each, with its sample count.
pub struct Decoded {
    pub series: Vec<TimeSeries>,
    pub refused: Vec<String>,
    pub refused_samples: u64,
    /// Held until the series are stored.
    pub reservation: Reservation,
}

/// Decodes `body` within `limits`, reserving what it takes from `budget`
/// (the caller has reserved the compressed body in `reservation`).
/// Synchronous and CPU-bound: run it off the async threads.
pub fn decode(body: &[u8], limits: &IngestLimits, mut reservation: Reservation) -> Result<Decoded, Refusal> {
    let declared = snap::raw::decompress_len(body)
        .map_err(|e| Refusal::BadRequest(format!("snappy decode of the remote_write body failed: {e}")))?;
    if declared > limits.max_decoded_bytes {
        return Err(Refusal::BadRequest(format!(
            "remote_write body decodes to {declared} bytes, over the limit of {} bytes \
             (--remote-write-max-decoded-bytes)",
            limits.max_decoded_bytes
        )));
    }
    reservation.grow_to(body.len().saturating_add(declared))?;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Refusal::BadRequest(format!("snappy decode of the remote_write body failed: {e}")))?;
    let counts = scan(&raw, limits.max_series_per_request)?;
    reservation.grow_to(body.len().saturating_add(counts.footprint(raw.len())))?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| Refusal::BadRequest(format!("protobuf decode of the remote_write body failed: {e}")))?;
    drop(raw);
    let mut out = Decoded {
        series: Vec::with_capacity(req.timeseries.len()),
        refused: Vec::new(),
        refused_samples: 0,
        reservation,
    };
    let mut histograms = counts.histograms.into_iter().peekable();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        if let Some((_, n)) = histograms.next_if(|(at, _)| *at == i) {
            out.refused.push(format!(
                "native histograms are not supported yet: {n} histogram sample(s) dropped for series {}",
                label_set(&ts.labels)
            ));
            out.refused_samples += n as u64;
        }
        match check_labels(&ts.labels) {
            Ok(()) => out.series.push(ts),
            Err(e) => {
                out.refused.push(e);
                out.refused_samples += ts.samples.len() as u64;
            }
        }
    }
    Ok(out)
}

/// Prometheus's checks of a remote-written label set, in its words:
/// every label name non-empty, no name twice.
pub fn check_labels(labels: &[Label]) -> Result<(), String> {
    if labels.iter().any(|l| l.name.is_empty()) {
        return Err(format!("invalid metric name or labels, got {}", label_set(labels)));
    }
    let mut names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("invalid labels for series, labels {}, duplicated label {}", label_set(labels), w[0]));
    }
    Ok(())
}

/// `{a="1", b="2"}` as Prometheus prints a label set, in the order given.
fn label_set(labels: &[Label]) -> String {
    let inner: Vec<String> = labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_proto::prometheus::Sample;

    fn ts(labels: &[(&str, &str)], samples: usize) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: (0..samples).map(|i| Sample { value: 1.0, timestamp: i as i64 }).collect(),
        }
    }

    fn body(series: Vec<TimeSeries>) -> Vec<u8> {
        let raw = WriteRequest { timeseries: series, metadata: vec![] }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    }

    fn budget() -> Reservation {
        DecodeBudget::new(IngestLimits::default().decode_budget_bytes).reservation()
    }

    #[test]
    fn scan_counts_what_prost_decodes() {
        let series = vec![ts(&[("__name__", "a"), ("x", "1")], 3), ts(&[("__name__", "b")], 0)];
        let raw = WriteRequest { timeseries: series, metadata: vec![] }.encode_to_vec();
        let c = scan(&raw, 10).unwrap();
        assert_eq!(c, Counts { series: 2, labels: 3, samples: 3, histograms: vec![] });
        assert!(matches!(scan(&raw, 1), Err(Refusal::BadRequest(m)) if m.contains("more than 1 series")));
        assert!(scan(&raw[..raw.len() - 1], 10).is_err());
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_decompressing() {
        // A snappy block is its decoded length as a varint, then the data:
        // this one declares 1 GiB and carries nothing.
        let mut lie = Vec::new();
        let mut n: u64 = 1 << 30;
        while n >= 0x80 {
            lie.push((n as u8) | 0x80);
            n >>= 7;
        }
        lie.push(n as u8);
        let limits = IngestLimits::default();
        let budget = DecodeBudget::new(limits.decode_budget_bytes);
        match decode(&lie, &limits, budget.reservation()) {
            Err(Refusal::BadRequest(m)) => {
                assert!(
                    m.contains("decodes to 1073741824 bytes") && m.contains("--remote-write-max-decoded-bytes"),
                    "{m}"
                )
            }
            _ => panic!("not refused"),
        }
        assert_eq!(budget.available_bytes(), limits.decode_budget_bytes, "nothing stays reserved");
    }

    #[test]
    fn labels_are_checked_with_prometheus_wording() {
        let b = body(vec![
            ts(&[("__name__", "ok")], 1),
            ts(&[("__name__", "dup"), ("a", "1"), ("a", "2")], 2),
            ts(&[("__name__", "empty"), ("", "x")], 1),
        ]);
        let d = decode(&b, &IngestLimits::default(), budget()).unwrap_or_else(|_| panic!("decode"));
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.refused_samples, 3);
        assert_eq!(
            d.refused,
            [
                r#"invalid labels for series, labels {__name__="dup", a="1", a="2"}, duplicated label a"#,
                r#"invalid metric name or labels, got {__name__="empty", ="x"}"#,
            ]
        );
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = DecodeBudget::new(10 * UNIT);
        let mut a = budget.reservation();
        a.grow_to(6 * UNIT).unwrap_or_else(|_| panic!("first"));
        let mut b = budget.reservation();
        assert!(matches!(b.grow_to(6 * UNIT), Err(Refusal::Busy(_))));
        assert!(matches!(b.grow_to(11 * UNIT), Err(Refusal::BadRequest(_))));
        drop(a);
        assert!(b.grow_to(6 * UNIT).is_ok());
    }
}
