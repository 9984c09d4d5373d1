//! TSDB micro-benchmarks: appending scrape-like batches, selecting 10,000
//! series, and resolving matchers that intersect large postings lists.
//! Run with `cargo bench -p pharos-tsdb`.

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharos_model::{Labels, MatchOp, Matcher, Sample};
use pharos_storage::{SeriesSamples, Storage};
use pharos_tsdb::{RocksOptions, RocksStorage};

const SERIES: usize = 10_000;

fn labels(i: usize) -> Labels {
    let (inst, cpu) = ((i / 100).to_string(), (i % 100).to_string());
    Labels::from_pairs(&[("__name__", "node_cpu_seconds_total"), ("instance", &inst), ("cpu", &cpu), ("mode", "idle")])
}

fn batch(step: i64) -> Vec<SeriesSamples> {
    (0..SERIES)
        .map(|i| SeriesSamples {
            labels: labels(i),
            samples: vec![Sample::new(step * 15_000, (step * i as i64) as f64)],
        })
        .collect()
}

fn loaded(steps: i64) -> (tempfile::TempDir, RocksStorage) {
    let d = tempfile::tempdir().unwrap();
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    for step in 0..steps {
        s.append("t", &batch(step)).unwrap();
    }
    s.flush().unwrap();
    (d, s)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tsdb");
    g.sample_size(10);

    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("append 10k series x 1 sample", |b| {
        let d = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
        let mut step = 0;
        b.iter(|| {
            s.append("t", &batch(step)).unwrap();
            step += 1;
        });
    });

    let (_d, s) = loaded(240);
    g.throughput(Throughput::Elements(SERIES as u64 * 240));
    g.bench_function("select 10k series x 240 samples", |b| {
        b.iter(|| {
            let got = s.select("t", &[Matcher::equal("__name__", "node_cpu_seconds_total")], 0, i64::MAX).unwrap();
            assert_eq!(got.len(), SERIES);
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("postings intersection (3 matchers, 990 of 10k series)", |b| {
        let ms = [
            Matcher::equal("__name__", "node_cpu_seconds_total"),
            Matcher::new(MatchOp::Regex, "instance", "4.").unwrap(),
            Matcher::new(MatchOp::NotEqual, "cpu", "0").unwrap(),
        ];
        b.iter(|| {
            let got = s.select("t", &ms, 0, 15_000).unwrap();
            assert_eq!(got.len(), 990);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
