//! The ack log: what `write` had acknowledged, for `verify` to read back.
//!
//! Values are a pure function of (series, generation, timestamp) (see
//! [`crate::model`]), so the log needs only the run's parameters (a JSON
//! header line) and, per 2xx-acknowledged request, its rectangle of series
//! `lo..hi` x intervals `k0..k1` (one text line of four integers).
//! Thousands of samples cost a dozen bytes.

use std::io::{Read, Write};

use crate::Error;
use crate::model::Churn;

const MAGIC: &str = "# pharos-bench ack log v1";

/// Everything needed to recompute the samples of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub job: String,
    pub series: u64,
    pub series_per_instance: u64,
    pub start_ms: i64,
    pub interval_ms: i64,
    pub intervals: u64,
    pub churn: Churn,
}

impl Header {
    pub fn timestamp(&self, k: u64) -> i64 {
        crate::schedule::WritePlan::timestamp(self.start_ms, self.interval_ms, k)
    }

    /// The `instance` label of slot `slot`.
    pub fn instance(&self, slot: u64) -> String {
        instance_label(slot / self.series_per_instance.max(1))
    }

    pub fn instances(&self) -> u64 {
        self.series.div_ceil(self.series_per_instance.max(1))
    }
}

/// `instance` label of instance number `i`.
pub fn instance_label(i: u64) -> String {
    format!("host-{i}:9100")
}

/// One acknowledged request: series `lo..hi` x intervals `k0..k1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ack {
    pub k0: u64,
    pub k1: u64,
    pub lo: u64,
    pub hi: u64,
}

impl Ack {
    pub fn samples(&self) -> u64 {
        (self.hi - self.lo) * (self.k1 - self.k0)
    }
}

/// Writes the header line; then [`write_ack`] per acknowledged request.
pub fn write_header(w: &mut impl Write, h: &Header) -> Result<(), Error> {
    let json = serde_json::to_string(h).map_err(|e| Error::Invalid(format!("ack log header: {e}")))?;
    writeln!(w, "{MAGIC}\n{json}")?;
    Ok(())
}

pub fn write_ack(w: &mut impl Write, a: &Ack) -> Result<(), Error> {
    writeln!(w, "{} {} {} {}", a.lo, a.hi, a.k0, a.k1)?;
    Ok(())
}

/// Reads a whole ack log, checking every record against the header. A last
/// line without its newline (a `write` killed mid-record) is ignored.
pub fn read(mut r: impl Read) -> Result<(Header, Vec<Ack>), Error> {
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    if let Some(cut) = text.rfind('\n') {
        text.truncate(cut + 1);
    }
    let mut lines = text.lines();
    let bad = |n: usize, why: &str| Error::Invalid(format!("ack log line {n}: {why}"));
    if lines.next() != Some(MAGIC) {
        return Err(bad(1, "not a pharos-bench ack log"));
    }
    let header: Header = match lines.next() {
        Some(l) => serde_json::from_str(l).map_err(|e| bad(2, &e.to_string()))?,
        None => return Err(bad(2, "missing header")),
    };
    let mut acks = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 3;
        let f: Vec<u64> = line
            .split_ascii_whitespace()
            .map(|x| x.parse::<u64>().map_err(|e| bad(n, &e.to_string())))
            .collect::<Result<_, _>>()?;
        let [lo, hi, k0, k1] = f[..] else {
            return Err(bad(n, "want four integers: lo hi k0 k1"));
        };
        if lo >= hi || hi > header.series || k0 >= k1 || k1 > header.intervals {
            return Err(bad(n, "record outside the run"));
        }
        acks.push(Ack { k0, k1, lo, hi });
    }
    Ok((header, acks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            job: "j".into(),
            series: 10,
            series_per_instance: 4,
            start_ms: 1_000,
            interval_ms: 100,
            intervals: 5,
            churn: Churn { per_minute: 3, start_ms: 1_000 },
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write_header(&mut buf, &header()).unwrap();
        let acks = [Ack { k0: 0, k1: 1, lo: 0, hi: 10 }, Ack { k0: 1, k1: 5, lo: 3, hi: 4 }];
        for a in &acks {
            write_ack(&mut buf, a).unwrap();
        }
        let (h, got) = read(buf.as_slice()).unwrap();
        assert_eq!(h, header());
        assert_eq!(got, acks);
        assert_eq!(got.iter().map(Ack::samples).sum::<u64>(), 14);
        assert_eq!((h.instances(), h.instance(9), h.timestamp(2)), (3, "host-2:9100".to_string(), 1_200));
    }

    #[test]
    fn rejects_other_files_and_records_outside_the_run() {
        assert!(read("hello\n".as_bytes()).is_err());
        let mut buf = Vec::new();
        write_header(&mut buf, &header()).unwrap();
        let ok_len = buf.len();
        buf.extend_from_slice(b"0 11 0 1\n");
        assert!(read(buf.as_slice()).is_err(), "hi beyond series");
        buf.truncate(ok_len);
        buf.extend_from_slice(b"0 1 4 6\n");
        assert!(read(buf.as_slice()).is_err(), "k1 beyond intervals");
        buf.truncate(ok_len);
        buf.extend_from_slice(b"0 1 x 2\n");
        assert!(read(buf.as_slice()).is_err());
        buf.truncate(ok_len);
        buf.extend_from_slice(b"0 1 0 1\n2 3 1");
        assert_eq!(read(buf.as_slice()).unwrap().1.len(), 1, "torn last line ignored");
    }
}
