//! The Prometheus text format 0.0.4.

use pharos_exposition::{Format, MetricMeta, MetricType, ParsedSample, Scrape, parse};
use pharos_model::{Labels, is_stale_nan};

#[track_caller]
fn ok(body: &str) -> Scrape {
    match parse(body, Format::PrometheusText) {
        Ok(scrape) => scrape,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[track_caller]
fn err(body: &str) -> String {
    match parse(body, Format::PrometheusText) {
        Ok(scrape) => panic!("expected an error, parsed {scrape:?}"),
        Err(e) => e.to_string(),
    }
}

fn sample(pairs: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> ParsedSample {
    ParsedSample { labels: Labels::from_pairs(pairs), timestamp_ms, value }
}

fn meta(family: &str, kind: MetricType, help: &str) -> MetricMeta {
    MetricMeta { family: family.into(), kind, help: help.into(), unit: String::new() }
}

const NODE_EXPORTER: &str = r##"# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.4921e-05
go_gc_duration_seconds{quantile="0.5"} 4.6413e-05
go_gc_duration_seconds{quantile="1"} 0.000773651
go_gc_duration_seconds_sum 0.012585479
go_gc_duration_seconds_count 243
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 13172.93
node_cpu_seconds_total{cpu="0",mode="iowait"} 5.74
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.2446965248e+10
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="host-1",release="5.15.0-91-generic",sysname="Linux",version="#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023"} 1
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.70245012e+09
"##;

#[test]
fn node_exporter_snippet() {
    let s = ok(NODE_EXPORTER);
    assert_eq!(s.samples.len(), 10);
    assert_eq!(s.samples[0], sample(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0")], 2.4921e-05, None));
    assert_eq!(s.samples[4], sample(&[("__name__", "go_gc_duration_seconds_count")], 243.0, None));
    assert_eq!(
        s.samples[5],
        sample(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", "idle")], 13172.93, None)
    );
    assert_eq!(s.samples[7].value, 4.2446965248e+10);
    assert_eq!(s.samples[8].labels.get("version"), Some("#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023"));
    assert_eq!(s.samples[9].labels.to_string(), "process_start_time_seconds{}");

    assert_eq!(s.metadata.len(), 5);
    assert_eq!(
        s.metadata[0],
        meta(
            "go_gc_duration_seconds",
            MetricType::Summary,
            "A summary of the pause duration of garbage collection cycles."
        )
    );
    assert_eq!(
        s.metadata[1],
        meta("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent in each mode.")
    );
    assert_eq!(s.metadata[2].kind, MetricType::Gauge);
}

#[test]
fn histogram_buckets_keep_le_as_written() {
    let s = ok(r#"# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"#);
    let les: Vec<_> = s.samples.iter().filter_map(|x| x.labels.get("le")).collect();
    assert_eq!(les, ["0.05", "0.1", "+Inf"]);
    assert_eq!(s.samples[2].value, 144320.0);
    assert_eq!(s.metadata, [meta("http_request_duration_seconds", MetricType::Histogram, "")]);
}

#[test]
fn escapes_in_label_values_and_help() {
    let s = ok(concat!(
        "# HELP m Line one\\nline \\\\ two \\\"kept\\\" \\t\n",
        "m{path=\"C:\\\\dir\\\\\",msg=\"say \\\"hi\\\"\\nbye\",odd=\"\\t\"} 1\n",
    ));
    let l = &s.samples[0].labels;
    assert_eq!(l.get("path"), Some("C:\\dir\\"));
    assert_eq!(l.get("msg"), Some("say \"hi\"\nbye"));
    assert_eq!(l.get("odd"), Some("\\t"));
    assert_eq!(s.metadata[0].help, "Line one\nline \\ two \\\"kept\\\" \\t");
}

#[test]
fn timestamps_and_whitespace() {
    let s = ok("a 1 1395066363000\n  b\t{ x = \"y\" , }\t2\t 1000  \nc{x=\"1\"}3\nd 4 0\n");
    assert_eq!(s.samples[0], sample(&[("__name__", "a")], 1.0, Some(1_395_066_363_000)));
    assert_eq!(s.samples[1], sample(&[("__name__", "b"), ("x", "y")], 2.0, Some(1000)));
    assert_eq!(s.samples[2], sample(&[("__name__", "c"), ("x", "1")], 3.0, None));
    assert_eq!(s.samples[3].timestamp_ms, Some(0));
}

#[test]
fn special_and_exponent_values() {
    let s = ok("a NaN\nb +Inf\nc -Inf\nd Inf\ne 1e3\nf -0.5E-2\ng nan\nh .5\ni -0\n");
    let v: Vec<f64> = s.samples.iter().map(|x| x.value).collect();
    assert!(v[0].is_nan() && !is_stale_nan(v[0]));
    assert_eq!(v[1..6], [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, 1000.0, -0.005]);
    assert!(v[6].is_nan());
    assert_eq!(v[7..], [0.5, 0.0]);
}

#[test]
fn comments_blank_lines_and_odd_but_valid_lines() {
    let s = ok(concat!(
        "\n# just a comment\n#no space\n# HELPER not metadata\n# HELP\n\n",
        "   \t\n",
        "# HELP only_help Some help.\n",
        "only_help{empty=\"\",a=\"1\" b=\"2\",} 1\n",
        "# TYPE untyped_one untyped\n",
        "untyped_one{} 2", // no final newline
    ));
    assert_eq!(s.samples.len(), 2);
    // Empty values are dropped; like Prometheus, a missing comma is tolerated.
    assert_eq!(s.samples[0].labels, Labels::from_pairs(&[("__name__", "only_help"), ("a", "1"), ("b", "2")]));
    assert_eq!(s.samples[1].value, 2.0);
    assert_eq!(
        s.metadata,
        [meta("only_help", MetricType::Unknown, "Some help."), meta("untyped_one", MetricType::Unknown, "")]
    );
}

#[test]
fn metadata_merges_per_family_and_last_wins() {
    let s = ok("# TYPE m gauge\n# HELP m first\nm 1\n# HELP other x\n# HELP m second\n# HELP e \t \n");
    assert_eq!(
        s.metadata,
        [
            meta("m", MetricType::Gauge, "second"),
            meta("other", MetricType::Unknown, "x"),
            meta("e", MetricType::Unknown, "")
        ]
    );
}

#[test]
fn empty_body_is_an_empty_scrape() {
    assert_eq!(ok(""), Scrape::default());
    assert_eq!(ok("\n\n# nothing\n"), Scrape::default());
}

#[test]
fn errors_name_line_and_problem() {
    let cases = [
        ("ok 1\n\n3abc 1\n", "line 3: invalid metric name \"3abc\""),
        ("a 1\nb 2\nc 3\nd 4\ne 5\nf 6\nm abc\n", "line 7: expected value after metric, got \"abc\""),
        ("m\n", "line 1: expected value after metric, got end of line"),
        ("m{a=\"b\"}\n", "line 1: expected value after metric, got end of line"),
        ("foo-bar 1\n", "line 1: invalid metric name \"foo-bar\""),
        ("{a=\"b\"} 1\n", "line 1: expected metric name, got \"{\""),
        ("m{3a=\"b\"} 1\n", "line 1: invalid label name \"3a\""),
        ("m{,} 1\n", "line 1: expected label name, got \",\""),
        ("x 1\nm{a\"b\"} 1\n", "line 2: expected \"=\" after label name \"a\", got \"\\\"\""),
        ("m{a=b} 1\n", "line 1: expected label value, got \"b\""),
        ("m{a=\"b\n", "line 1: unterminated label value"),
        ("m{a=\"b\"\n", "line 1: expected label name, got end of line"),
        ("m{a=\"1\",b=\"\",a=\"2\"} 1\n", "line 1: duplicate label name \"a\""),
        ("m{__name__=\"x\"} 1\n", "line 1: duplicate label name \"__name__\""),
        ("m 1 abc\n", "line 1: invalid timestamp \"abc\""),
        // Prometheus's lexer takes digits only, though the format docs show a negative one.
        ("m 1 -5\n", "line 1: invalid timestamp \"-5\""),
        ("m 1 2 3\n", "line 1: expected end of line after timestamp, got \"3\""),
        ("m 1 99999999999999999999\n", "line 1: timestamp \"99999999999999999999\" out of range"),
        ("m 1e999\n", "line 1: value \"1e999\" out of range"),
        ("m 0x1p3\n", "line 1: expected value after metric, got \"0x1p3\""),
        ("m 1_000\n", "line 1: expected value after metric, got \"1_000\""),
        ("m +NaN\n", "line 1: expected value after metric, got \"+NaN\""),
        ("m 1\r\n", "line 1: expected value after metric, got \"1\\r\""),
        ("# TYPE m countr\n", "line 1: invalid metric type \"countr\""),
        ("# TYPE m gaugehistogram\n", "line 1: invalid metric type \"gaugehistogram\""),
        ("\n# HELP 3m x\n", "line 2: expected metric name after HELP, got \"3m\""),
        ("# TYPE m{ counter\n", "line 1: expected blank after metric name in TYPE, got \"{\""),
    ];
    for (body, want) in cases {
        assert_eq!(err(body), want, "{body:?}");
    }
}

#[test]
fn error_lines_count_newlines_inside_label_values() {
    // Like Prometheus, the text format allows raw newlines in label values.
    let s = ok("m{a=\"x\ny\"} 1\n");
    assert_eq!(s.samples[0].labels.get("a"), Some("x\ny"));
    assert_eq!(err("m{a=\"x\ny\"} 1\nn 1 x\n"), "line 3: invalid timestamp \"x\"");
}
