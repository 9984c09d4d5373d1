//! Write-ahead log records: what one append stored, by series id.
//!
//! Layout: repeated { series id u64 LE, sample count u32 LE,
//! count × (t i64 LE, value bits u64 LE) }. The series table is written in
//! the same atomic RocksDB batch as the record, so ids always resolve.

use pharos_model::Sample;

pub fn encode(entries: &[(u64, Vec<Sample>)]) -> Vec<u8> {
    let n: usize = entries.iter().map(|(_, s)| 12 + 16 * s.len()).sum();
    let mut buf = Vec::with_capacity(n);
    for (id, samples) in entries {
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        for s in samples {
            buf.extend_from_slice(&s.t.to_le_bytes());
            buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        }
    }
    buf
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = b.split_at_checked(N)?;
    *b = rest;
    head.try_into().ok()
}

/// Decodes a record; `None` if it is truncated or malformed.
pub fn decode(mut b: &[u8]) -> Option<Vec<(u64, Vec<Sample>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let id = u64::from_le_bytes(take(&mut b)?);
        let n = u32::from_le_bytes(take(&mut b)?) as usize;
        if b.len() < n.checked_mul(16)? {
            return None;
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = i64::from_le_bytes(take(&mut b)?);
            let v = f64::from_bits(u64::from_le_bytes(take(&mut b)?));
            samples.push(Sample::new(t, v));
        }
        out.push((id, samples));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_truncation() {
        let e = vec![(1, vec![Sample::new(-1, f64::NAN)]), (9, vec![])];
        let b = encode(&e);
        let d = decode(&b).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1[0].v.to_bits(), f64::NAN.to_bits());
        for i in 1..b.len() {
            let _ = decode(&b[..i]); // never panics
        }
        assert!(decode(&b[..b.len() - 1]).is_none() || b.len() < 13);
    }
}
