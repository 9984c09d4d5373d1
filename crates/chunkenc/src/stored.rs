//! Chunks at rest: the encoding a chunk is written to disk in.
//!
//! The head appends in Gorilla XOR ([`crate::ChunkEncoder`]): cheap per
//! sample and exact for every float. When a chunk is written to disk,
//! [`encode_stored`] re-encodes it, prefixed by a tag byte:
//!
//! - `0x01` — the XOR chunk, unchanged. Used when some value is not a short
//!   decimal (NaN, ±Inf, `-0.0`, or needs more than 15 decimal places).
//! - `0x02` — decimal: every value is exactly `m / 10^e` for one exponent
//!   `e` in `0..=15` and an integer `|m| < 2^53`, as most exported metrics
//!   are (counters, byte counts, gauges with a few decimals). Layout:
//!   `varint n`, `u8 e`, then the `n` timestamps and then the `n`
//!   mantissas, each run as zig-zag varint delta-of-deltas (the first value
//!   is its own delta-of-delta from 0, the second's delta from the first is
//!   taken against a previous delta of 0).
//!
//! The decimal form is byte-aligned and repetitive (a regular scrape
//! interval is a run of zero bytes; a steady counter a run of equal
//! bytes), so the store's block compression (zstd) shrinks it several
//! times further, where a bit-packed XOR stream looks random to it. That is
//! the idea VictoriaMetrics uses, here only for data at rest, and only when
//! it is lossless: every value is checked to decode to the same bits.

use crate::{ChunkEncoder, ChunkError, decode};

const TAG_XOR: u8 = 0x01;
const TAG_DECIMAL: u8 = 0x02;
const MAX_EXP: u32 = 15;
const MAX_MANTISSA: i64 = 1 << 53;

/// Re-encodes an XOR chunk (as [`ChunkEncoder::bytes`] gives) for disk.
pub fn encode_stored(xor: &[u8]) -> Result<Vec<u8>, ChunkError> {
    let samples = decode(xor)?;
    if let Some(out) = encode_decimal(&samples) {
        return Ok(out);
    }
    let mut out = Vec::with_capacity(xor.len() + 1);
    out.push(TAG_XOR);
    out.extend_from_slice(xor);
    Ok(out)
}

/// Decodes a chunk written by [`encode_stored`].
pub fn decode_stored(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    match bytes.split_first() {
        Some((&TAG_XOR, xor)) => decode(xor),
        Some((&TAG_DECIMAL, rest)) => decode_decimal(rest),
        Some((tag, _)) => Err(ChunkError::Corrupt(format!("unknown stored chunk encoding {tag:#04x}"))),
        None => Err(ChunkError::Corrupt("empty stored chunk".into())),
    }
}

/// Reopens a stored chunk for further appends.
pub fn reopen_stored(bytes: &[u8]) -> Result<ChunkEncoder, ChunkError> {
    match bytes.split_first() {
        Some((&TAG_XOR, xor)) => ChunkEncoder::from_bytes(xor),
        _ => {
            let mut enc = ChunkEncoder::new();
            for (t, v) in decode_stored(bytes)? {
                enc.append(t, v)?;
            }
            Ok(enc)
        }
    }
}

/// The smallest exponent `e` with `v == m / 10^e` exactly, and that `m`.
fn decimal_of(v: f64) -> Option<(u32, i64)> {
    (0..=MAX_EXP).find_map(|e| mantissa(v, e).map(|m| (e, m)))
}

/// `m` with `m / 10^e == v` bit for bit, if there is one below 2^53.
fn mantissa(v: f64, e: u32) -> Option<i64> {
    let scale = 10f64.powi(e as i32); // exact for e <= 22
    let m = (v * scale).round();
    if !m.is_finite() || m.abs() >= MAX_MANTISSA as f64 {
        return None;
    }
    let m = m as i64;
    ((m as f64 / scale).to_bits() == v.to_bits()).then_some(m)
}

fn encode_decimal(samples: &[(i64, f64)]) -> Option<Vec<u8>> {
    let mut e = 0;
    for (_, v) in samples {
        e = e.max(decimal_of(*v)?.0);
    }
    let mantissas: Vec<i64> = samples.iter().map(|(_, v)| mantissa(*v, e)).collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(2 + samples.len() * 3);
    out.push(TAG_DECIMAL);
    put_uvarint(&mut out, samples.len() as u64);
    out.push(e as u8);
    put_dods(&mut out, samples.iter().map(|(t, _)| *t));
    put_dods(&mut out, mantissas.into_iter());
    Some(out)
}

fn decode_decimal(mut b: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let n = get_uvarint(&mut b)?;
    let n = usize::try_from(n).ok().filter(|n| *n <= u16::MAX as usize).ok_or_else(|| corrupt("sample count"))?;
    let (&e, rest) = b.split_first().ok_or_else(|| corrupt("exponent"))?;
    b = rest;
    if u32::from(e) > MAX_EXP {
        return Err(corrupt("exponent"));
    }
    let ts = get_dods(&mut b, n)?;
    let ms = get_dods(&mut b, n)?;
    if !b.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    let scale = 10f64.powi(i32::from(e));
    let mut out = Vec::with_capacity(n);
    for (i, (t, m)) in ts.into_iter().zip(ms).enumerate() {
        if out.last().is_some_and(|(last, _): &(i64, f64)| *last >= t) {
            return Err(corrupt(&format!("timestamp {i} not increasing")));
        }
        out.push((t, m as f64 / scale));
    }
    Ok(out)
}

fn corrupt(what: &str) -> ChunkError {
    ChunkError::Corrupt(format!("decimal chunk: bad {what}"))
}

fn put_dods(out: &mut Vec<u8>, xs: impl Iterator<Item = i64>) {
    let (mut prev, mut delta) = (0i64, 0i64);
    for x in xs {
        let d = x.wrapping_sub(prev);
        put_uvarint(out, zigzag(d.wrapping_sub(delta)));
        prev = x;
        delta = d;
    }
}

fn get_dods(b: &mut &[u8], n: usize) -> Result<Vec<i64>, ChunkError> {
    let (mut prev, mut delta) = (0i64, 0i64);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        delta = delta.wrapping_add(unzigzag(get_uvarint(b)?));
        prev = prev.wrapping_add(delta);
        out.push(prev);
    }
    Ok(out)
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, ChunkError> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                break;
            }
            *b = &b[i + 1..];
            return Ok(x);
        }
    }
    Err(corrupt("varint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xor_of(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut enc = ChunkEncoder::new();
        for (t, v) in samples {
            enc.append(*t, *v).unwrap();
        }
        enc.bytes().to_vec()
    }

    fn roundtrip(samples: &[(i64, f64)]) -> u8 {
        let stored = encode_stored(&xor_of(samples)).unwrap();
        let back = decode_stored(&stored).unwrap();
        assert_eq!(back.len(), samples.len());
        for ((t0, v0), (t1, v1)) in samples.iter().zip(&back) {
            assert_eq!(t0, t1);
            assert_eq!(v0.to_bits(), v1.to_bits(), "{v0} came back as {v1}");
        }
        let reopened = reopen_stored(&stored).unwrap();
        assert_eq!(reopened.len(), samples.len());
        stored[0]
    }

    #[test]
    fn decimal_values_take_the_decimal_form() {
        let s: Vec<(i64, f64)> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000, 0.1 * (i % 7) as f64)).collect();
        // 0.1 * 3 is 0.30000000000000004: not a short decimal, so XOR.
        assert_eq!(roundtrip(&s), TAG_XOR);
        let s: Vec<(i64, f64)> =
            (0..120).map(|i| (1_700_000_000_000 + i * 15_000, [0.5, 12.25, 3.0, -7.125][i as usize % 4])).collect();
        assert_eq!(roundtrip(&s), TAG_DECIMAL);
        let s: Vec<(i64, f64)> = (0..120).map(|i| (i * 15_000 - 900_000, (i * i * 1000) as f64)).collect();
        assert_eq!(roundtrip(&s), TAG_DECIMAL);
    }

    #[test]
    fn special_values_stay_exact() {
        for v in [f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002), f64::INFINITY, -0.0, 1e300, f64::MIN_POSITIVE] {
            let s = [(1, 1.0), (2, v), (5, 2.5)];
            assert_eq!(roundtrip(&s), TAG_XOR, "{v}");
        }
        roundtrip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, -(2f64.powi(52)))]);
        roundtrip(&[(7, 0.123456789012345)]);
    }

    #[test]
    fn pseudo_random_samples_roundtrip() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let n = (x % 130) as usize;
            let mut t = (x >> 20) as i64 % 1_000_000;
            let mut s = Vec::new();
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t += 1 + (x % 30_000) as i64;
                let v = match x % 5 {
                    0 => f64::from_bits(x),
                    1 => (x % 1000) as f64 / 100.0,
                    2 => (x >> 11) as f64,
                    3 => -((x % 77) as f64) / 8.0,
                    _ => 42.0,
                };
                s.push((t, v));
            }
            roundtrip(&s);
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        let stored = encode_stored(&xor_of(&[(1, 1.0), (2, 2.0), (3, 4.0)])).unwrap();
        for i in 0..stored.len() {
            assert!(decode_stored(&stored[..i]).is_err(), "prefix {i}");
        }
        let mut extra = stored.clone();
        extra.push(0);
        assert!(decode_stored(&extra).is_err());
        assert!(decode_stored(&[0x7f, 1, 2]).is_err());
        assert!(decode_stored(&[TAG_DECIMAL, 1, 16, 0, 0]).is_err());
        assert!(decode_stored(&[TAG_DECIMAL, 2, 0, 2, 1, 0, 0]).is_err()); // timestamps 1, 1
    }
}
