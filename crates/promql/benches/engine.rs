//! The evaluator over 10,000 counter series and 2,000 classic histogram buckets (one
//! hour at 15 s), from an in-memory store: instant queries at the end of the hour and
//! range queries over the hour at a 60 s step. Covers the query classes of the
//! conformance lists: rate, sum by, histogram_quantile, binary ops, math functions, topk,
//! subqueries.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pharos_model::{Labels, Sample, Series};
use pharos_promql::{Engine, MemoryQueryable};

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 240;
const END_MS: i64 = 1_700_000_000_000;

fn data() -> MemoryQueryable {
    let start = END_MS - (POINTS - 1) * STEP_MS;
    let mut out = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 100.0
    };
    for inst in 0..100 {
        for path in 0..10 {
            for status in ["200", "201", "204", "301", "400", "401", "403", "404", "500", "503"] {
                let labels = Labels::from_pairs(&[
                    ("__name__", "http_requests_total"),
                    ("instance", &format!("host-{inst}:9100")),
                    ("job", if inst % 2 == 0 { "api" } else { "web" }),
                    ("path", &format!("/p{path}")),
                    ("status", status),
                ]);
                let mut v = 0.0;
                let samples = (0..POINTS)
                    .map(|i| {
                        v += next();
                        Sample::new(start + i * STEP_MS, v)
                    })
                    .collect();
                out.push(Series::new(labels, samples));
            }
        }
    }
    let bounds = ["0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10", "+Inf"];
    for inst in 0..200 {
        let mut cum = vec![0.0; bounds.len()];
        let mut points: Vec<Vec<Sample>> = vec![Vec::new(); bounds.len()];
        for i in 0..POINTS {
            let mut below = 0.0;
            for (b, c) in cum.iter_mut().enumerate() {
                below += next();
                *c += below;
                points[b].push(Sample::new(start + i * STEP_MS, *c));
            }
        }
        for (b, samples) in points.into_iter().enumerate() {
            let labels = Labels::from_pairs(&[
                ("__name__", "latency_seconds_bucket"),
                ("instance", &format!("host-{inst}:9100")),
                ("le", bounds[b]),
            ]);
            out.push(Series::new(labels, samples));
        }
    }
    MemoryQueryable::new(out)
}

const QUERIES: &[(&str, &str)] = &[
    ("selector", "http_requests_total"),
    ("rate", "rate(http_requests_total[5m])"),
    ("sum_by_rate", "sum by (job, status) (rate(http_requests_total[5m]))"),
    ("histogram_quantile", "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))"),
    (
        "binary_ratio",
        r#"sum by (instance) (rate(http_requests_total{status=~"5.."}[5m])) / sum by (instance) (rate(http_requests_total[5m]))"#,
    ),
    ("binary_scalar", "http_requests_total * 2 > 100"),
    ("math_fn", "ln(http_requests_total)"),
    ("topk", "topk(5, rate(http_requests_total[5m]))"),
    ("subquery", "max_over_time(sum by (job) (rate(http_requests_total[1m]))[30m:1m])"),
];

fn bench(c: &mut Criterion) {
    let store = data();
    let engine = Engine::default();
    let run = |f: std::pin::Pin<Box<dyn std::future::Future<Output = _> + '_>>| futures::executor::block_on(f);
    let mut g = c.benchmark_group("instant");
    g.sample_size(10);
    for (name, q) in QUERIES {
        g.bench_function(*name, |b| b.iter(|| black_box(run(Box::pin(engine.instant(&store, q, END_MS))).unwrap())));
    }
    g.finish();
    let mut g = c.benchmark_group("range_1h_step_60s");
    g.sample_size(10);
    for (name, q) in QUERIES {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(run(Box::pin(engine.range(&store, q, END_MS - 3_600_000, END_MS, 60_000))).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
