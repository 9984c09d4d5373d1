//! Annotations: the warnings and infos a query returns beside its result, with
//! Prometheus 3's texts (`util/annotations/annotations.go`).
//!
//! The evaluator collects them in an [`Annotations`] set while it runs (no global
//! state). Each one points at the expression that caused it by *node id*: the
//! pre-order number of the node in the lowered tree, parentheses counted (see
//! `ast::lower_with_positions`).
//! Node ids, not byte offsets, so that a shard evaluating a pushed-down aggregation
//! can report annotations the querier maps into its own tree (the aggregation's
//! subtree has the same shape on both sides). [`Annotations::render`] turns them into
//! the API's strings, `<text> (<line>:<column>)`, given the query's node positions.
//!
//! Like Prometheus, annotations are deduplicated by text (the first position wins),
//! except that forced-monotonicity infos of `histogram_quantile` merge their details.

use std::collections::HashMap;

use pharos_model::civil_from_days;

/// Warning or info (`PromQL warning: ...`, `PromQL info: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnotationKind {
    Warning,
    Info,
}

/// Details of a `histogram_quantile` input that had to be made monotonic, merged
/// over every sample where it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Monotonicity {
    pub min_ts: i64,
    pub max_ts: i64,
    pub min_bucket: f64,
    pub max_bucket: f64,
    pub max_diff: f64,
    /// Samples fixed, minus one (Prometheus's counter).
    pub extra: u64,
}

/// One annotation: its text without position, and the node it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub kind: AnnotationKind,
    pub text: String,
    /// Pre-order id of the node in the evaluated tree.
    pub node: usize,
    pub monotonicity: Option<Monotonicity>,
}

/// A deduplicated set of annotations, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    items: Vec<Annotation>,
    /// Position in `items` by kind and text.
    index: HashMap<(AnnotationKind, String), usize>,
}

const WARN: &str = "PromQL warning";
const INFO: &str = "PromQL info";

impl Annotation {
    fn new(kind: AnnotationKind, text: String, node: usize) -> Self {
        Self { kind, text, node, monotonicity: None }
    }

    /// `quantile value should be between 0 and 1, got <q>`.
    pub fn invalid_quantile(q: f64, node: usize) -> Self {
        let t = format!("{WARN}: quantile value should be between 0 and 1, got {}", go_g(q));
        Self::new(AnnotationKind::Warning, t, node)
    }

    /// `ratio value should be between -1 and 1, got <r>, capping to <to>`.
    pub fn invalid_ratio(r: f64, to: f64, node: usize) -> Self {
        let t = format!("{WARN}: ratio value should be between -1 and 1, got {}, capping to {}", go_g(r), go_g(to));
        Self::new(AnnotationKind::Warning, t, node)
    }

    /// A classic histogram bucket whose `le` label is missing or not a number.
    pub fn bad_bucket_label(metric: &str, le: &str, node: usize) -> Self {
        let t = format!("{WARN}: bucket label \"le\" is missing or has a malformed value of {le:?}");
        Self::new(AnnotationKind::Warning, with_metric_name(t, metric), node)
    }

    /// `rate`/`increase` over a metric whose name does not look like a counter's.
    pub fn possible_non_counter(metric: &str, node: usize) -> Self {
        let t = format!(
            "{INFO}: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
        );
        Self::new(AnnotationKind::Info, t, node)
    }

    /// `sort`-like functions in a range query, whose result is ordered by labels anyway.
    pub fn sort_in_range_query(node: usize) -> Self {
        let t = format!("{WARN}: sort is ineffective for range queries since results are always ordered by labels");
        Self::new(AnnotationKind::Warning, t, node)
    }

    /// `histogram_quantile` input whose bucket counts decreased somewhere.
    pub fn forced_monotonicity(node: usize, m: Monotonicity) -> Self {
        let t = format!(
            "{INFO}: input to histogram_quantile needed to be fixed for monotonicity \
             (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
        );
        Self { monotonicity: Some(m), ..Self::new(AnnotationKind::Info, t, node) }
    }

    /// The text as the API shows it, with the node's position in `query`.
    fn render(&self, query: &str, offset: Option<usize>) -> String {
        let mut out = self.text.clone();
        if let Some(m) = &self.monotonicity {
            out += &format!(
                ", from buckets {} to {}, with a max diff of {}, over {} samples from {} to {}",
                go_g(m.min_bucket),
                go_g(m.max_bucket),
                go_g_precision(m.max_diff, 2),
                m.extra + 1,
                rfc3339(m.min_ts),
                rfc3339(m.max_ts)
            );
        }
        match offset {
            Some(o) => format!("{out} ({})", line_col(query, o)),
            None => out,
        }
    }
}

fn with_metric_name(text: String, metric: &str) -> String {
    if metric.is_empty() { text } else { format!("{text} for metric name {metric:?}") }
}

impl Annotations {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Annotation> {
        self.items.iter()
    }

    /// Adds `a` unless one with the same kind and text is present; forced-monotonicity
    /// details merge into the present one.
    pub fn add(&mut self, a: Annotation) {
        let Some(old) = self.index.get(&(a.kind, a.text.clone())).and_then(|&i| self.items.get_mut(i)) else {
            self.index.insert((a.kind, a.text.clone()), self.items.len());
            self.items.push(a);
            return;
        };
        if let (Some(o), Some(n)) = (&mut old.monotonicity, a.monotonicity) {
            o.min_ts = o.min_ts.min(n.min_ts);
            o.max_ts = o.max_ts.max(n.max_ts);
            if n.min_bucket < o.min_bucket {
                o.min_bucket = n.min_bucket;
            }
            if n.max_bucket > o.max_bucket {
                o.max_bucket = n.max_bucket;
            }
            if n.max_diff > o.max_diff {
                o.max_diff = n.max_diff;
            }
            o.extra += n.extra + 1;
        }
    }

    /// Adds every annotation of `other`, its node ids shifted by `node_offset`.
    pub fn merge_shifted(&mut self, other: Annotations, node_offset: usize) {
        for mut a in other.items {
            a.node += node_offset;
            self.add(a);
        }
    }

    /// The API's `(warnings, infos)`: each text with the line and column (1-based,
    /// in bytes, as Prometheus counts) of its node in `query`; `positions` maps node
    /// ids to byte offsets.
    pub fn render(&self, query: &str, positions: &[usize]) -> (Vec<String>, Vec<String>) {
        let (mut warnings, mut infos) = (Vec::new(), Vec::new());
        for a in &self.items {
            let s = a.render(query, positions.get(a.node).copied().filter(|&p| p != usize::MAX));
            match a.kind {
                AnnotationKind::Warning => warnings.push(s),
                AnnotationKind::Info => infos.push(s),
            }
        }
        (warnings, infos)
    }
}

/// Prometheus's `StartPosInput`: `line:column` of byte offset `pos`.
fn line_col(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = &query.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let last_break = before.iter().rposition(|&b| b == b'\n').map_or(-1, |i| i as i64);
    format!("{line}:{}", pos as i64 - last_break)
}

/// Go's `%g` (shortest representation; exponent form below 1e-4 and from 1e21).
pub(crate) fn go_g(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) { exp_form(mant, exp) } else { format!("{v}") }
}

/// Go's `%.<p>g`: `p` significant digits, trailing zeros dropped.
pub(crate) fn go_g_precision(v: f64, p: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let e = format!("{v:.*e}", p.saturating_sub(1));
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mant = trim_zeros(mant);
    if exp < -4 || exp >= p as i32 {
        return exp_form(&mant, exp);
    }
    let decimals = usize::try_from(p as i32 - 1 - exp).unwrap_or(0);
    trim_zeros(&format!("{:.*}", decimals, mant.parse::<f64>().unwrap_or(v) * 10f64.powi(exp)))
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
}

fn exp_form(mant: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// Go's RFC 3339 rendering of the whole second of `ms` (UTC).
fn rfc3339(ms: i64) -> String {
    // Go's integer division truncates toward zero.
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(go_g(1.1), "1.1");
        assert_eq!(go_g(-1.0), "-1");
        assert_eq!(go_g(1e21), "1e+21");
        assert_eq!(go_g(0.00001), "1e-05");
        assert_eq!(go_g(123456.0), "123456");
        assert_eq!(go_g(f64::NAN), "NaN");
        assert_eq!(go_g_precision(0.01, 2), "0.01");
        assert_eq!(go_g_precision(123.0, 2), "1.2e+02");
        assert_eq!(go_g_precision(5.0, 2), "5");
        assert_eq!(go_g_precision(2.55, 2), "2.5");
    }

    #[test]
    fn positions_are_line_and_byte_column() {
        assert_eq!(line_col("sum(x)", 0), "1:1");
        assert_eq!(line_col("sum(x)", 4), "1:5");
        assert_eq!(line_col("sum(\n  x)", 7), "2:3");
        assert_eq!(rfc3339(3_000_000), "1970-01-01T00:50:00Z");
    }

    #[test]
    fn deduplicated_by_text_and_rendered() {
        let mut a = Annotations::default();
        a.add(Annotation::invalid_quantile(f64::NAN, 1));
        a.add(Annotation::invalid_quantile(f64::NAN, 2));
        a.add(Annotation::possible_non_counter("up", 0));
        let (w, i) = a.render("histogram_quantile(NaN, x)", &[0, 19, 24]);
        assert_eq!(w, vec!["PromQL warning: quantile value should be between 0 and 1, got NaN (1:20)"]);
        assert_eq!(
            i,
            vec![
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:1)"
            ]
        );
    }

    #[test]
    fn monotonicity_details_merge() {
        let m = |ts, lo, hi, diff| Monotonicity {
            min_ts: ts,
            max_ts: ts,
            min_bucket: lo,
            max_bucket: hi,
            max_diff: diff,
            extra: 0,
        };
        let mut a = Annotations::default();
        a.add(Annotation::forced_monotonicity(0, m(60_000, 1.0, 2.0, 0.5)));
        a.add(Annotation::forced_monotonicity(0, m(120_000, 0.5, 2.0, 3.0)));
        let (_, i) = a.render("x", &[0]);
        assert!(i[0].ends_with(
            ", from buckets 0.5 to 2, with a max diff of 3, over 2 samples from 1970-01-01T00:01:00Z to 1970-01-01T00:02:00Z (1:1)"
        ), "{}", i[0]);
    }
}
