//! Codec-level tests: roundtrips, reopening, ordering, robustness, size.

use super::*;

/// Prometheus' staleness marker, a signalling-style NaN payload.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Tiny deterministic xorshift64* generator, so failures are reproducible.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn encode(samples: &[(i64, f64)]) -> ChunkEncoder {
    let mut enc = ChunkEncoder::new();
    for &(t, v) in samples {
        enc.append(t, v).unwrap();
    }
    enc
}

/// Compares sample lists bit-exactly (so NaN payloads and -0.0 count).
fn assert_same(actual: &[(i64, f64)], expected: &[(i64, f64)]) {
    assert_eq!(actual.len(), expected.len(), "sample count");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.0, e.0, "timestamp of sample {i}");
        assert_eq!(a.1.to_bits(), e.1.to_bits(), "value bits of sample {i}: {} vs {}", a.1, e.1);
    }
}

/// Encodes, checks metadata and decodes; returns the encoded bytes.
fn roundtrip(samples: &[(i64, f64)]) -> Vec<u8> {
    let enc = encode(samples);
    assert_eq!(enc.len(), samples.len());
    assert_eq!(enc.is_empty(), samples.is_empty());
    assert_eq!(enc.min_t(), samples.first().map(|s| s.0));
    assert_eq!(enc.max_t(), samples.last().map(|s| s.0));
    assert_eq!(enc.last().map(|(t, v)| (t, v.to_bits())), samples.last().map(|&(t, v)| (t, v.to_bits())));
    assert_same(&decode(enc.bytes()).unwrap(), samples);
    enc.bytes().to_vec()
}

fn regular_15s(n: usize) -> Vec<(i64, f64)> {
    (0..n).map(|i| (1_700_000_000_000 + i as i64 * 15_000, i as f64 * 0.5)).collect()
}

#[test]
fn empty_chunk() {
    let enc = ChunkEncoder::default();
    assert_eq!(enc.bytes(), &[0, 0]);
    assert!(enc.is_empty());
    assert_eq!((enc.min_t(), enc.max_t(), enc.last()), (None, None, None));
    assert!(decode(enc.bytes()).unwrap().is_empty());
}

#[test]
fn regular_15s_roundtrip() {
    let bytes = roundtrip(&regular_15s(TARGET_SAMPLES));
    assert_eq!(&bytes[..2], &(TARGET_SAMPLES as u16).to_be_bytes());
}

#[test]
fn irregular_intervals_roundtrip() {
    // Exercise every delta-of-delta bucket in both directions, including
    // the asymmetric bucket edges.
    let deltas: [i64; 16] = [
        15_000,
        15_000,
        15_001,
        14_990,
        23_192,
        15_000,
        1,
        8_193,
        65_537,
        1,
        524_289,
        1,
        10_000_000_000,
        5,
        1 << 40,
        3,
    ];
    let mut t = -1_000_000;
    let mut samples = vec![(t, 1.0)];
    for (i, d) in deltas.iter().enumerate() {
        t += d;
        samples.push((t, (i as f64).sqrt()));
    }
    roundtrip(&samples);
}

#[test]
fn dod_bucket_edges() {
    for nbits in [14u32, 17, 20] {
        let half = 1i64 << (nbits - 1);
        for dod in [half, half + 1, -(half - 1), -half, -(half + 1)] {
            let base = 1i64 << 30;
            let samples = [(0, 0.0), (base, 1.0), (2 * base + dod, 2.0)];
            roundtrip(&samples);
        }
    }
}

#[test]
fn extreme_timestamps_roundtrip() {
    roundtrip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
    roundtrip(&[(i64::MIN, 1.0), (i64::MIN + 1, 2.0), (0, 3.0), (i64::MAX, 4.0)]);
    roundtrip(&[(i64::MIN, 0.0), (-1, 0.0), (i64::MAX, 0.0)]);
    roundtrip(&[(i64::MAX - 2, 0.0), (i64::MAX - 1, 0.0), (i64::MAX, 0.0)]);
    roundtrip(&[(-5_000, 1.0), (-4_000, 1.0), (-3_500, 1.0), (-1, 1.0)]);
}

#[test]
fn special_floats_roundtrip() {
    let values = [
        f64::NAN,
        f64::from_bits(STALE_NAN),
        -f64::NAN,
        f64::from_bits(0x7ff8_dead_beef_0001),
        f64::from_bits(0xfff0_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::from_bits(1), // Smallest subnormal.
        -f64::from_bits(0x000f_ffff_ffff_ffff),
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        1.0,
        1.0,
        f64::from_bits(STALE_NAN),
        f64::from_bits(u64::MAX),
    ];
    let samples: Vec<_> = values.iter().enumerate().map(|(i, &v)| (i as i64 * 1000, v)).collect();
    roundtrip(&samples);
    // Also each value alone and repeated.
    for &v in &values {
        roundtrip(&[(0, v), (1, v), (2, v)]);
    }
}

#[test]
fn bytes_decode_after_every_append() {
    let samples = regular_15s(50);
    let mut enc = ChunkEncoder::new();
    for (i, &(t, v)) in samples.iter().enumerate() {
        enc.append(t, v).unwrap();
        assert_same(&decode(enc.bytes()).unwrap(), &samples[..=i]);
    }
}

#[test]
fn reopen_then_append_matches_one_shot() {
    let mut rng = XorShift::new(7);
    let samples = random_series(&mut rng, 200);
    let one_shot = encode(&samples);
    for split in 0..=samples.len() {
        let partial = encode(&samples[..split]);
        let mut reopened = ChunkEncoder::from_bytes(partial.bytes()).unwrap();
        assert_eq!(reopened.len(), split);
        assert_eq!(reopened.min_t(), partial.min_t());
        assert_eq!(reopened.last().map(|s| s.0), partial.last().map(|s| s.0));
        for &(t, v) in &samples[split..] {
            reopened.append(t, v).unwrap();
        }
        assert_eq!(reopened.bytes(), one_shot.bytes(), "split at {split}");
    }
}

#[test]
fn out_of_order_is_rejected_and_chunk_unchanged() {
    let mut enc = encode(&[(1_000, 1.0), (2_000, 2.0)]);
    let before = enc.bytes().to_vec();
    for t in [2_000, 1_999, i64::MIN] {
        match enc.append(t, 3.0) {
            Err(ChunkError::OutOfOrder { last: 2_000, t: got }) => assert_eq!(got, t),
            other => panic!("expected OutOfOrder, got {other:?}"),
        }
    }
    assert_eq!(enc.bytes(), before.as_slice());
    enc.append(2_001, 3.0).unwrap();
    assert_eq!(enc.len(), 3);
}

#[test]
fn full_chunk_rejects_more_samples() {
    let mut enc = ChunkEncoder::new();
    for t in 0..i64::from(u16::MAX) {
        enc.append(t, 1.0).unwrap();
    }
    assert!(matches!(enc.append(i64::MAX, 1.0), Err(ChunkError::TooManySamples)));
    assert_eq!(decode(enc.bytes()).unwrap().len(), usize::from(u16::MAX));
    let mut reopened = ChunkEncoder::from_bytes(enc.bytes()).unwrap();
    assert!(matches!(reopened.append(i64::MAX, 1.0), Err(ChunkError::TooManySamples)));
}

/// A random strictly increasing series of up to `max_len` samples, mixing
/// timestamp regimes and value shapes.
fn random_series(rng: &mut XorShift, max_len: u64) -> Vec<(i64, f64)> {
    let len = rng.below(max_len + 1) as usize;
    let mut t = match rng.below(4) {
        0 => i64::MIN + rng.below(1000) as i64,
        1 => -(rng.below(1 << 40) as i64),
        _ => 1_700_000_000_000 + rng.below(1 << 30) as i64,
    };
    let step = [1, 1_000, 15_000, 60_000][rng.below(4) as usize];
    let mut v = 100.0;
    let mut samples = Vec::with_capacity(len);
    for i in 0..len {
        if i > 0 {
            let delta = match rng.below(10) {
                0 => 1 + rng.below(1 << 20) as i64,
                1 => 1 + (rng.next_u64() >> 2) as i64,
                2 => 1 + rng.below(3) as i64,
                _ => step + rng.below(50) as i64 - 25,
            }
            .max(1);
            match t.checked_add(delta) {
                Some(next) => t = next,
                None => break,
            }
        }
        v = match rng.below(8) {
            0 => f64::from_bits(rng.next_u64()), // Any bits, NaNs included.
            1 => f64::from_bits(STALE_NAN),
            2 => v, // Repeat.
            3 => rng.below(1000) as f64,
            4 => v + rng.below(10) as f64, // Counter.
            5 => (rng.next_u64() as i64 as f64) / 1e3,
            _ => v * 1.01 - 0.5,
        };
        samples.push((t, v));
    }
    samples
}

#[test]
fn random_series_roundtrip() {
    let mut rng = XorShift::new(0x5eed_1234_abcd_ef01);
    for _ in 0..2_000 {
        let samples = random_series(&mut rng, 300);
        let bytes = roundtrip(&samples);
        // Lazy iteration agrees with `decode`.
        let lazy: Vec<_> = iter(&bytes).collect::<Result<_, _>>().unwrap();
        assert_same(&lazy, &samples);
    }
}

#[test]
fn truncated_chunks_error_after_a_prefix() {
    let mut rng = XorShift::new(99);
    let mut chunks = vec![encode(&regular_15s(TARGET_SAMPLES)).bytes().to_vec()];
    for _ in 0..50 {
        chunks.push(encode(&random_series(&mut rng, 150)).bytes().to_vec());
    }
    for full in &chunks {
        let samples = decode(full).unwrap();
        for len in 0..full.len() {
            let cut = &full[..len];
            assert!(decode(cut).is_err(), "truncated to {len} decoded");
            assert!(ChunkEncoder::from_bytes(cut).is_err());
            // The iterator yields a prefix of the samples, then one error.
            let items: Vec<_> = iter(cut).collect();
            let (last, prefix) = items.split_last().unwrap();
            assert!(last.is_err());
            let prefix: Vec<_> = prefix.iter().map(|s| *s.as_ref().unwrap()).collect();
            assert_same(&prefix, &samples[..prefix.len()]);
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift::new(42);
    for _ in 0..20_000 {
        let len = rng.below(64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if len >= 2 && rng.below(2) == 0 {
            // Plausible small headers reach deeper into the decoder.
            bytes[0] = 0;
            bytes[1] = rng.below(20) as u8;
        }
        let decoded = decode(&bytes);
        let reopened = ChunkEncoder::from_bytes(&bytes);
        assert_eq!(decoded.is_ok(), reopened.is_ok());
        let _ = iter(&bytes).count();
    }
}

#[test]
fn bit_flips_never_panic_and_reopen_agrees_with_decode() {
    let mut rng = XorShift::new(3);
    for _ in 0..200 {
        let samples = random_series(&mut rng, 130);
        let bytes = encode(&samples).bytes().to_vec();
        for _ in 0..20 {
            let mut mutated = bytes.clone();
            let bit = rng.below(mutated.len() as u64 * 8) as usize;
            mutated[bit / 8] ^= 1 << (bit % 8);
            let Ok(decoded) = decode(&mutated) else {
                assert!(ChunkEncoder::from_bytes(&mutated).is_err());
                continue;
            };
            // Whatever decodes must be a valid chunk that can be extended,
            // and re-encoding it reproduces the samples.
            let mut enc = ChunkEncoder::from_bytes(&mutated).unwrap();
            assert_eq!(enc.len(), decoded.len());
            if let Some((t, _)) = enc.last()
                && t < i64::MAX
            {
                enc.append(t + 1, 0.5).unwrap();
                let extended = decode(enc.bytes()).unwrap();
                assert_same(&extended[..decoded.len()], &decoded);
            }
            assert_same(&decode(encode(&decoded).bytes()).unwrap(), &decoded);
        }
    }
}

#[test]
fn trailing_data_is_rejected() {
    let mut bytes = encode(&regular_15s(10)).bytes().to_vec();
    bytes.push(0);
    assert!(decode(&bytes).is_err());
    assert!(decode(&[0, 0, 0]).is_err());
    assert!(decode(&[0]).is_err());
    assert!(decode(&[]).is_err());
}

#[test]
fn slowly_increasing_counter_compresses_well() {
    let mut v = 1_000.0;
    let samples: Vec<_> = (0..TARGET_SAMPLES as i64)
        .map(|i| {
            // Occasionally bump the counter by a small amount.
            if i % 3 == 0 {
                v += (i % 7) as f64;
            }
            (1_700_000_000_000 + i * 15_000, v)
        })
        .collect();
    let bytes = roundtrip(&samples);
    let per_sample = bytes.len() as f64 / samples.len() as f64;
    assert!(per_sample < 2.0, "{per_sample:.3} bytes/sample");
}

#[test]
fn byte_layout_matches_prometheus() {
    let enc = encode(&[(1_000, 1.0), (2_000, 1.0), (3_000, 2.0)]);
    #[rustfmt::skip]
    let expected = [
        0x00, 0x03,                                     // count = 3
        0xd0, 0x0f,                                     // varint(1000), zig-zag
        0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // bits(1.0)
        0xe8, 0x07,                                     // uvarint(1000)
        // `0` value repeats | `0` dod == 0 | `11` new window |
        // leading 00001 | meaningful 001011 | 0x7ff in 11 bits | padding
        0b0011_0000, 0b1001_0111, 0b1111_1111, 0b1100_0000,
    ];
    assert_eq!(enc.bytes(), &expected);
}
