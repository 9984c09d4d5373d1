//! Parse throughput on a real payload: `prometheus-node-exporter` 1.5's
//! `/metrics` (Debian package, captured on this project's test machine),
//! in the Prometheus text format and converted to OpenMetrics. `parse`
//! builds every sample's label set; `parse_each` without building them is
//! what a scrape costs once its series are in the scraper's series cache.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pharos_exposition::{Format, parse, parse_each};

const NODE_EXPORTER: &str = include_str!("node_exporter.txt");

/// The same payload as OpenMetrics: counters' samples get the `_total`
/// suffix their family name lacks, `untyped` is `unknown`, and the body
/// ends with `# EOF`.
fn openmetrics() -> String {
    let mut counters = Vec::new();
    let mut out = String::with_capacity(NODE_EXPORTER.len() + 1024);
    for line in NODE_EXPORTER.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            if let (Some(name), Some("counter")) = (parts.next(), parts.next()) {
                counters.push(name.to_string());
                if let Some(base) = name.strip_suffix("_total") {
                    out.push_str(&format!("# TYPE {base} counter\n"));
                    continue;
                }
            }
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|r| r.strip_suffix(" untyped")) {
            out.push_str(&format!("# TYPE {name} unknown\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

fn bench(c: &mut Criterion) {
    let om = openmetrics();
    let n = parse(NODE_EXPORTER, Format::PrometheusText).expect("the captured payload parses").samples.len();
    let m = parse(&om, Format::OpenMetrics).expect("the OpenMetrics version parses").samples.len();
    assert_eq!(n, m, "both formats give the same samples");
    let mut g = c.benchmark_group("parse node_exporter");
    g.throughput(Throughput::Bytes(NODE_EXPORTER.len() as u64));
    g.bench_function("prometheus text 0.0.4", |b| {
        b.iter(|| parse(black_box(NODE_EXPORTER), Format::PrometheusText).map(|s| s.samples.len()))
    });
    g.bench_function("prometheus text 0.0.4, parse_each, labels not built", |b| {
        b.iter(|| {
            let mut n = 0usize;
            parse_each(black_box(NODE_EXPORTER), Format::PrometheusText, |s| n += s.series.len()).map(|_| n)
        })
    });
    g.throughput(Throughput::Bytes(om.len() as u64));
    g.bench_function("openmetrics 1.0", |b| {
        b.iter(|| parse(black_box(&om), Format::OpenMetrics).map(|s| s.samples.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
