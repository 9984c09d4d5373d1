//! Parsers for scraped metrics: the Prometheus text format 0.0.4 and the
//! OpenMetrics 1.0 text format, with the same acceptance rules as the
//! `textparse` package of Prometheus 2.42.
//!
//! [`parse`] turns a whole scrape body into a [`Scrape`]: every sample with
//! its label set (the metric name included as `__name__`), optional
//! timestamp in milliseconds and value, plus the `HELP`/`TYPE`/`UNIT`
//! metadata merged per metric family. The first syntax error aborts the
//! parse; its message names the 1-based line and what was wrong.
//!
//! The two dialects differ in strictness:
//!
//! * **Prometheus text** is lenient: spaces and tabs may separate any two
//!   tokens, blank lines and free-form `#` comments are skipped, a trailing
//!   comma (or, as in Prometheus, no comma at all) may separate labels, and
//!   timestamps are integer milliseconds.
//! * **OpenMetrics** is strict: single spaces only, no blank lines, only the
//!   `HELP`, `TYPE`, `UNIT` and `EOF` comments, timestamps are (float)
//!   seconds, exemplars (` # {...} value [ts]`) are validated and discarded,
//!   and the body must end with `# EOF`. Counter samples keep their `_total`
//!   suffix and `_created` series are kept as ordinary samples, as the
//!   Prometheus 2.42 scraper ingests them.
//!
//! Values are read like Go's `strconv.ParseFloat` minus the post-Go-1.13
//! forms Prometheus rejects (hex floats and `_` separators); every NaN is
//! normalised to Prometheus's ordinary NaN so a scrape can never forge the
//! staleness marker.
//!
//! The parsers make a single pass over the bytes without backtracking or
//! regexes; apart from the returned label strings, per-sample work reuses
//! scratch buffers. No input makes them panic.
//!
//! [`Exposition`] is the writing side, for Pharos's own `/metrics`: every
//! crate writes the metrics of the counters it keeps into it.
//!
//! This crate owns the format only: it never does I/O (the body is already in
//! memory) and never applies scrape policy such as relabelling, limits or
//! staleness, which belong to `pharos-scrape`.

mod float;
mod meta;
mod openmetrics;
mod prom;
mod scan;
mod write;

use std::fmt;

use pharos_model::Labels;
pub use write::{Exposition, format_value};

/// The exposition formats the parser understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
    /// OpenMetrics 1.0 text format (`application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// Picks the parser for a response's `Content-Type` the way Prometheus
    /// does: `application/openmetrics-text` (any parameters, any case) means
    /// OpenMetrics; anything else, or no header, means the text format.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        let media_type = ct.and_then(|ct| ct.split(';').next()).map(str::trim);
        match media_type {
            Some(m) if m.eq_ignore_ascii_case("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }
}

/// One scraped sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// The series' labels, including `__name__`; empty values are dropped.
    pub labels: Labels,
    /// The exposed timestamp in milliseconds since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// The value; NaN is always Prometheus's ordinary NaN, never stale.
    pub value: f64,
}

/// The metric types of both formats. The text format's `untyped` is
/// [`MetricType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling, as Prometheus reports it in its metadata API.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of one metric family, merged from its `HELP`, `TYPE` and
/// `UNIT` lines (the last of each wins). Missing parts stay empty/unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricMeta {
    pub family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// Everything parsed from one scrape body. Metadata is in order of each
/// family's first metadata line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    pub samples: Vec<ParsedSample>,
    pub metadata: Vec<MetricMeta>,
}

/// Why a scrape body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Malformed input at the given 1-based line.
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
}

impl ParseError {
    /// The 1-based line the error was found on.
    pub fn line(&self) -> usize {
        match self {
            ParseError::Syntax { line, .. } => *line,
        }
    }
}

/// One sample as the parser meets it, before its label set is built, so a
/// scraper that has seen the same series before can reuse what it made of
/// it instead of building the labels again (see [`parse_each`]).
pub struct RawSample<'p, 'a> {
    /// The metric name and label set exactly as written (`name{a="b"}`,
    /// blanks inside included): the same text always means the same labels.
    pub series: &'a str,
    /// The exposed timestamp in milliseconds since the epoch, if any.
    pub timestamp_ms: Option<i64>,
    /// The value; NaN is always Prometheus's ordinary NaN, never stale.
    pub value: f64,
    raw: &'p [scan::RawLabel<'a>],
}

impl RawSample<'_, '_> {
    /// The sample's labels, as [`ParsedSample::labels`].
    pub fn labels(&self) -> Labels {
        scan::build_labels(self.raw)
    }
}

/// Parses a whole scrape body in the given format.
pub fn parse(body: &str, format: Format) -> Result<Scrape, ParseError> {
    let mut samples = Vec::new();
    let metadata = parse_each(body, format, |s| {
        samples.push(ParsedSample { labels: s.labels(), timestamp_ms: s.timestamp_ms, value: s.value })
    })?;
    Ok(Scrape { samples, metadata })
}

/// Parses a whole scrape body, handing each sample to `each` as it is
/// read, and returns the metadata. The body is fully checked: on an error,
/// `each` may have seen the samples before it, and the whole body is to be
/// rejected as [`parse`] would.
pub fn parse_each<'a>(
    body: &'a str,
    format: Format,
    each: impl FnMut(RawSample<'_, 'a>),
) -> Result<Vec<MetricMeta>, ParseError> {
    match format {
        Format::PrometheusText => prom::parse(body, each),
        Format::OpenMetrics => openmetrics::parse(body, each),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_selects_format() {
        let om = Some("application/openmetrics-text; version=1.0.0; charset=utf-8");
        assert_eq!(Format::from_content_type(om), Format::OpenMetrics);
        assert_eq!(Format::from_content_type(Some(" Application/OpenMetrics-Text")), Format::OpenMetrics);
        assert_eq!(Format::from_content_type(Some("text/plain; version=0.0.4")), Format::PrometheusText);
        assert_eq!(Format::from_content_type(Some("")), Format::PrometheusText);
        assert_eq!(Format::from_content_type(None), Format::PrometheusText);
    }

    #[test]
    fn error_display_names_the_line() {
        let e = ParseError::Syntax { line: 3, msg: "invalid metric name \"3abc\"".into() };
        assert_eq!(e.to_string(), "line 3: invalid metric name \"3abc\"");
        assert_eq!(e.line(), 3);
    }
}
