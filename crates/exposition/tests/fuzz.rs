//! Fuzz-ish robustness: truncated and mutated documents must never panic,
//! and every error must point at a line that exists.

use pharos_exposition::{Format, parse};

const TEXT: &str = concat!(
    "# HELP http_requests_total The total number of HTTP requests.\n",
    "# TYPE http_requests_total counter\n",
    "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n",
    "http_requests_total{method=\"post\",code=\"400\",} 3 1395066363000\n",
    "\n",
    "# Escaping in label values:\n",
    "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
    "metric_without_timestamp_and_labels 12.47\n",
    "something_weird{problem=\"division by zero\"} +Inf 3982045\n",
    "# TYPE rpc_duration_seconds summary\n",
    "rpc_duration_seconds{quantile=\"0.5\"} 4773\n",
    "rpc_duration_seconds_sum 1.7560473e+07\n",
    "rpc_duration_seconds_count 2693\n",
    "  spaced\t{ a = \"ü\" } NaN\t \n",
);

const OPENMETRICS: &str = concat!(
    "# TYPE foo_seconds histogram\n",
    "# UNIT foo_seconds seconds\n",
    "# HELP foo_seconds A \\\"histogram\\\".\n",
    "foo_seconds_bucket{le=\"0.01\"} 0\n",
    "foo_seconds_bucket{le=\"+Inf\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879607.789\n",
    "foo_seconds_count 17 1520879607.789\n",
    "foo_seconds_sum 324789.3\n",
    "foo_seconds_created 1520430000.123\n",
    "# TYPE c counter\n",
    "c_total{a=\"ü\\n\"} 1e3 # {} -Inf\n",
    "# EOF\n",
);

/// Deterministic xorshift64 so failures reproduce without a rand crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Parses in both formats; errors must name a line of the input.
fn check(body: &str) {
    let lines = body.matches('\n').count() + 1;
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        if let Err(e) = parse(body, format) {
            assert!((1..=lines).contains(&e.line()), "{format:?} {e} for {body:?}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn documents_are_valid() {
    assert_eq!(parse(TEXT, Format::PrometheusText).map(|s| s.samples.len()), Ok(9));
    assert_eq!(parse(OPENMETRICS, Format::OpenMetrics).map(|s| s.samples.len()), Ok(6));
}

#[test]
fn every_prefix_parses_or_errors_cleanly() {
    for doc in [TEXT, OPENMETRICS] {
        for end in 0..=doc.len() {
            if let Some(prefix) = doc.get(..end) {
                check(prefix);
            }
        }
    }
}

#[test]
fn openmetrics_prefixes_without_eof_fail() {
    let eof = OPENMETRICS.rfind("# EOF").unwrap();
    for end in 0..eof {
        if let Some(prefix) = OPENMETRICS.get(..end) {
            assert!(parse(prefix, Format::OpenMetrics).is_err(), "{prefix:?}");
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    // Bytes that matter to the grammar, plus a multi-byte character.
    const INTERESTING: &[u8] = b" \t\n{}\",=#\\_:.+-eE0123456789aINnfTYPEHELPUNIT\0\xc3\xbc";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..4000 {
        let doc = if round % 2 == 0 { TEXT } else { OPENMETRICS };
        let mut bytes = doc.as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            let byte = match rng.below(3) {
                0 => rng.next() as u8,
                _ => INTERESTING[rng.below(INTERESTING.len())],
            };
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {
                    // Duplicate a random slice somewhere else.
                    let from = rng.below(bytes.len());
                    let len = rng.below(16).min(bytes.len() - from);
                    let chunk = bytes[from..from + len].to_vec();
                    bytes.splice(at..at, chunk);
                }
            }
        }
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn pathological_inputs() {
    let long_name = "a".repeat(100_000);
    let many_labels = format!("m{{{}}} 1\n", (0..500).map(|i| format!("l{i}=\"v\"")).collect::<Vec<_>>().join(","));
    for body in [
        "\0",
        "\\",
        "\"",
        "{",
        "}",
        "#",
        "# ",
        "# HELP",
        "# HELP ",
        "# TYPE m",
        "m{",
        "m{a",
        "m{a=",
        "m{a=\"",
        "m{a=\"\\",
        "m{a=\"\\\n\"} 1",
        "m 1 # {",
        "m_total 1 # {a=\"\\\"} 1",
        "ü 1",
        "m ü",
        "m 1 ü",
        "m{ü=\"x\"} 1",
        long_name.as_str(),
        many_labels.as_str(),
    ] {
        check(body);
    }
    assert_eq!(parse(&many_labels, Format::PrometheusText).unwrap().samples[0].labels.len(), 501);
}
