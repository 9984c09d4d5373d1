//! Encode / decode throughput of full-size chunks.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharos_chunkenc::{ChunkEncoder, TARGET_SAMPLES, decode, iter};

/// A realistic series: 15 s scrapes with a little jitter, gauge-like values.
fn gauge_series() -> Vec<(i64, f64)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut v = 0.25;
    (0..TARGET_SAMPLES as i64)
        .map(|i| {
            // xorshift for deterministic jitter and value noise.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let jitter = (state % 5) as i64 - 2;
            v += ((state >> 8) % 100) as f64 / 1000.0 - 0.05;
            (1_700_000_000_000 + i * 15_000 + jitter, v)
        })
        .collect()
}

/// A monotonically increasing counter at exact 15 s intervals.
fn counter_series() -> Vec<(i64, f64)> {
    (0..TARGET_SAMPLES as i64).map(|i| (1_700_000_000_000 + i * 15_000, (i * 3 + i % 4) as f64)).collect()
}

fn encode(samples: &[(i64, f64)]) -> ChunkEncoder {
    let mut enc = ChunkEncoder::new();
    for &(t, v) in samples {
        if enc.append(t, v).is_err() {
            unreachable!("benchmark series are strictly increasing");
        }
    }
    enc
}

fn bench_chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Elements(TARGET_SAMPLES as u64));
    for (name, samples) in [("gauge", gauge_series()), ("counter", counter_series())] {
        let bytes = encode(&samples).bytes().to_vec();
        group.bench_function(format!("encode/{name}"), |b| b.iter(|| encode(black_box(&samples))));
        group.bench_function(format!("decode/{name}"), |b| b.iter(|| decode(black_box(&bytes))));
        group.bench_function(format!("iter_sum/{name}"), |b| {
            b.iter(|| iter(black_box(&bytes)).map_while(Result::ok).map(|(_, v)| v).sum::<f64>())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_chunks);
criterion_main!(benches);
