//! The OpenMetrics 1.0 text format.

use pharos_exposition::{Format, MetricMeta, MetricType, Scrape, parse};
use pharos_model::Labels;

#[track_caller]
fn ok(body: &str) -> Scrape {
    match parse(body, Format::OpenMetrics) {
        Ok(scrape) => scrape,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[track_caller]
fn err(body: &str) -> String {
    match parse(body, Format::OpenMetrics) {
        Ok(scrape) => panic!("expected an error, parsed {scrape:?}"),
        Err(e) => e.to_string(),
    }
}

fn names(s: &Scrape) -> Vec<&str> {
    s.samples.iter().filter_map(|x| x.labels.metric_name()).collect()
}

const DOC: &str = r#"# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32
acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283.0
acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325.0
# TYPE go_goroutines gauge
go_goroutines 69
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
# HELP process_cpu_seconds Total user and system CPU time spent in seconds.
process_cpu_seconds_total 4.20072246e+06
process_cpu_seconds_created 1.6e9
# TYPE foo histogram
foo_bucket{le="0.01"} 0
foo_bucket{le="+Inf"} 17 # {trace_id="KOO5S4vxi0o"} 0.67 1520879607.789
foo_count 17
foo_sum 324789.3
foo_created 1520430000.123
# TYPE build info
build_info{version="1.0"} 1
# TYPE state stateset
state{state="a"} 1
state{state="b"} 0
# TYPE gh gaugehistogram
gh_gbucket{le="+Inf"} 1
gh_gcount 1
gh_gsum 1
# TYPE mystery unknown
mystery 1
# EOF
"#;

#[test]
fn full_document() {
    let s = ok(DOC);
    assert_eq!(
        names(&s),
        [
            "acme_http_router_request_seconds_sum",
            "acme_http_router_request_seconds_count",
            "acme_http_router_request_seconds_created",
            "go_goroutines",
            "process_cpu_seconds_total",
            "process_cpu_seconds_created",
            "foo_bucket",
            "foo_bucket",
            "foo_count",
            "foo_sum",
            "foo_created",
            "build_info",
            "state",
            "state",
            "gh_gbucket",
            "gh_gcount",
            "gh_gsum",
            "mystery",
        ]
    );
    assert_eq!(
        s.samples[0].labels,
        Labels::from_pairs(&[
            ("__name__", "acme_http_router_request_seconds_sum"),
            ("method", "GET"),
            ("path", "/api/v1")
        ])
    );
    assert_eq!(s.samples[4].value, 4.20072246e+06);
    assert_eq!(s.samples[5].value, 1.6e9);
    // The exemplar is dropped, the sample kept as is.
    assert_eq!(s.samples[7].value, 17.0);
    assert_eq!(s.samples[7].timestamp_ms, None);
    assert_eq!(s.samples[7].labels.get("le"), Some("+Inf"));

    let kinds: Vec<_> = s.metadata.iter().map(|m| (m.family.as_str(), m.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("acme_http_router_request_seconds", MetricType::Summary),
            ("go_goroutines", MetricType::Gauge),
            ("process_cpu_seconds", MetricType::Counter),
            ("foo", MetricType::Histogram),
            ("build", MetricType::Info),
            ("state", MetricType::StateSet),
            ("gh", MetricType::GaugeHistogram),
            ("mystery", MetricType::Unknown),
        ]
    );
    assert_eq!(
        s.metadata[0],
        MetricMeta {
            family: "acme_http_router_request_seconds".into(),
            kind: MetricType::Summary,
            help: "Latency though all of ACME's HTTP request router.".into(),
            unit: "seconds".into(),
        }
    );
    assert_eq!(s.metadata[2].unit, "seconds");
    assert_eq!(s.metadata[1].unit, "");
}

#[test]
fn timestamps_are_seconds_truncated_to_milliseconds() {
    let s = ok("a 1 1520879607.789\nb 2 -1.5\nc 3 1e3\nd_total 4 10 # {x=\"y\"} 1 11\n# EOF");
    let ts: Vec<_> = s.samples.iter().map(|x| x.timestamp_ms).collect();
    assert_eq!(ts, [Some(1_520_879_607_789), Some(-1500), Some(1_000_000), Some(10_000)]);
}

#[test]
fn escapes_help_and_special_values() {
    let s = ok(concat!(
        "# HELP m Say \\\"hi\\\"\\nand \\\\ bye\n",
        "# HELP empty \n",
        "m{a=\"q\\\"\\\\\\n\"} NaN\n",
        "n +Inf\n",
        "o{} -Inf\n",
        "# EOF\n",
    ));
    assert_eq!(s.metadata[0].help, "Say \"hi\"\nand \\ bye");
    assert_eq!(s.metadata[1].help, "");
    assert_eq!(s.samples[0].labels.get("a"), Some("q\"\\\n"));
    assert!(s.samples[0].value.is_nan());
    assert_eq!(s.samples[1].value, f64::INFINITY);
    assert_eq!(s.samples[2].value, f64::NEG_INFINITY);
}

#[test]
fn exemplars_are_validated_and_ignored() {
    let s = ok(concat!(
        "a_total 1 # {} 2\n",
        "b_bucket{le=\"1\"} 1 # {trace_id=\"abc\",span_id=\"d\"} 0.5 123.456\n",
        "c_total 1 1000 # {x=\"y\"} 1\n",
        "# EOF\n",
    ));
    assert_eq!(s.samples.len(), 3);
    assert_eq!(s.samples[2].timestamp_ms, Some(1_000_000));
}

#[test]
fn eof_may_lack_newline_and_may_be_all() {
    assert_eq!(ok("# EOF"), Scrape::default());
    assert_eq!(ok("m 1\n# EOF").samples.len(), 1);
}

#[test]
fn errors_name_line_and_problem() {
    let cases = [
        ("m 1\n", "line 2: unexpected end of input: data does not end with \"# EOF\""),
        ("m 1", "line 1: unexpected end of input: data does not end with \"# EOF\""),
        ("# EOF\nm 1\n", "line 2: unexpected data after \"# EOF\""),
        ("# EOF\n\n", "line 2: unexpected data after \"# EOF\""),
        ("m 1\n\nn 2\n# EOF\n", "line 2: expected metric name, got end of line"),
        (
            "# hello\n# EOF\n",
            "line 1: invalid comment: OpenMetrics allows only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\"",
        ),
        ("#EOF\n", "line 1: invalid comment: OpenMetrics allows only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\""),
        ("3abc 1\n# EOF\n", "line 1: invalid metric name \"3abc\""),
        ("foo-bar 1\n# EOF\n", "line 1: invalid metric name \"foo-bar\""),
        ("m\t1\n# EOF\n", "line 1: expected value after metric, got \"\\t\""),
        ("m  1\n# EOF\n", "line 1: expected value after metric, got \" \""),
        ("m abc\n# EOF\n", "line 1: expected value after metric, got \"abc\""),
        ("m 1 \n# EOF\n", "line 1: expected timestamp, got end of line"),
        ("m 1 NaN\n# EOF\n", "line 1: invalid timestamp \"NaN\""),
        ("m 1 2 3\n# EOF\n", "line 1: expected end of line, got \" \""),
        ("m{a=\"b\",} 1\n# EOF\n", "line 1: expected label name, got \"}\""),
        ("m{a = \"b\"} 1\n# EOF\n", "line 1: expected \"=\" after label name \"a\", got \" \""),
        ("m{a=\"b\" ,c=\"d\"} 1\n# EOF\n", "line 1: expected \",\" or \"}\" after label value, got \" \""),
        ("m{a=\"b\nc\"} 1\n# EOF\n", "line 1: unterminated label value"),
        ("m{a=\"1\",a=\"2\"} 1\n# EOF\n", "line 1: duplicate label name \"a\""),
        ("m 1 # {a=\"b\"} 1\n# EOF\n", "line 1: metric name \"m\" does not support exemplars"),
        ("m_total 1 # {a=\"b\"}\n# EOF\n", "line 1: expected value after exemplar labels, got end of line"),
        ("m_total 1 # {a=\"b\"} x\n# EOF\n", "line 1: expected value after exemplar labels, got \"x\""),
        ("m_total 1 # {a=\"b\"} 1 Inf\n# EOF\n", "line 1: invalid exemplar timestamp \"Inf\""),
        ("m_total 1 # {a=\"b\"} 1\n", "line 2: unexpected end of input: data does not end with \"# EOF\""),
        ("# TYPE m untyped\n# EOF\n", "line 1: invalid metric type \"untyped\""),
        ("# UNIT foo_bytes seconds\n# EOF\n", "line 1: unit \"seconds\" not a suffix of metric \"foo_bytes\""),
        ("# UNIT fooseconds seconds\n# EOF\n", "line 1: unit \"seconds\" not a suffix of metric \"fooseconds\""),
        ("# HELP foo\n# EOF\n", "line 1: expected space and text after metric name in HELP, got end of line"),
        ("# HELP  foo x\n# EOF\n", "line 1: expected metric name after HELP, got \" \""),
        ("# HELP foo x", "line 1: unexpected end of input: data does not end with \"# EOF\""),
    ];
    for (body, want) in cases {
        assert_eq!(err(body), want, "{body:?}");
    }
}

#[test]
fn the_same_body_differs_between_formats() {
    // Lenient text-format input is not valid OpenMetrics.
    let text = "m{a=\"b\",} 1\n";
    assert!(parse(text, Format::PrometheusText).is_ok());
    assert!(parse(text, Format::OpenMetrics).is_err());
    // In the text format the OpenMetrics comments are plain comments.
    let om = "# UNIT m_seconds seconds\nm_seconds 1\n# EOF\n";
    assert_eq!(ok(om).metadata[0].unit, "seconds");
    let as_text = parse(om, Format::PrometheusText).map(|s| (s.samples.len(), s.metadata.len()));
    assert_eq!(as_text, Ok((1, 0)));
}
