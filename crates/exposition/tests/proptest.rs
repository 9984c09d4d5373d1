//! Property tests: random documents, well-formed and not, never make either
//! parser panic; a well-formed text document parses to the samples it was
//! generated from; and `parse_each` gives the same labels for the same
//! series text, which is what a scraper's series cache relies on.

use std::collections::HashMap;

use pharos_exposition::{Format, parse, parse_each};
use pharos_model::Labels;
use proptest::prelude::*;

/// Parses in both formats; an error must name a line of the input.
fn check(body: &str) {
    let lines = body.matches('\n').count() + 1;
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        if let Err(e) = parse(body, format) {
            assert!((1..=lines).contains(&e.line()), "{format:?} {e} for {body:?}");
        }
    }
}

/// A label value with the characters that need escaping.
fn value() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('a'), Just('"'), Just('\\'), Just('\n'), Just('ü'), Just(' ')], 0..6)
        .prop_map(|cs| cs.into_iter().collect())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One sample: name, distinct label names with values, value, timestamp.
type Line = (String, Vec<(String, String)>, f64, Option<i64>);

fn line() -> impl Strategy<Value = Line> {
    (
        "[a-z_:][a-z0-9_:]{0,8}",
        proptest::collection::btree_map("[a-z][a-z0-9_]{0,5}", value(), 0..4),
        prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()), Just(f64::INFINITY)],
        proptest::option::of(0i64..=i64::MAX),
    )
        .prop_map(|(n, l, v, t)| (n, l.into_iter().collect(), v, t))
}

fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    for (name, labels, v, t) in lines {
        out.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            out.push_str(&format!("{{{}}}", pairs.join(",")));
        }
        out.push_str(&format!(" {v:?}"));
        if let Some(t) = t {
            out.push_str(&format!(" {t}"));
        }
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn grammar_soup_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("m"), Just("_total"), Just("{"), Just("}"), Just("a=\""), Just("\""), Just(","),
                Just(" "), Just("\t"), Just("\n"), Just("\\"), Just("# HELP "), Just("# TYPE m counter"),
                Just("# UNIT "), Just("# EOF"), Just(" # {"), Just("1"), Just("1.5e3"), Just("NaN"),
                Just("+Inf"), Just("-"), Just("ü"), Just("="),
            ],
            0..60,
        )
    ) {
        check(&parts.concat());
    }

    #[test]
    fn well_formed_text_round_trips(lines in proptest::collection::vec(line(), 0..8)) {
        let body = render(&lines);
        let parsed = parse(&body, Format::PrometheusText).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
        prop_assert_eq!(parsed.samples.len(), lines.len());
        for (s, (name, labels, v, t)) in parsed.samples.iter().zip(&lines) {
            let mut pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            pairs.push(("__name__", name));
            prop_assert_eq!(&s.labels, &Labels::from_pairs(&pairs));
            prop_assert_eq!(s.value, *v);
            prop_assert_eq!(s.timestamp_ms, *t);
        }
    }

    #[test]
    fn mutated_documents_never_panic(
        lines in proptest::collection::vec(line(), 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..5),
    ) {
        let mut bytes = render(&lines).into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn same_series_text_same_labels(lines in proptest::collection::vec(line(), 1..8), repeat in 1..3usize) {
        let body = render(&lines).repeat(repeat);
        let mut by_text: HashMap<String, Labels> = HashMap::new();
        parse_each(&body, Format::PrometheusText, |s| {
            let labels = s.labels();
            let known = by_text.entry(s.series.to_string()).or_insert_with(|| labels.clone());
            assert_eq!(*known, labels, "{}", s.series);
        }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse(&body, Format::PrometheusText).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.samples.len(), lines.len() * repeat);
    }
}
