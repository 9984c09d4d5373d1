//! The OpenMetrics 1.0 text format, as strictly as Prometheus's
//! `OpenMetricsParser`: single spaces only, no blank lines or free-form
//! comments, float-seconds timestamps, exemplars, and a final `# EOF`.

use pharos_model::METRIC_NAME;

use crate::float::parse_float;
use crate::meta::MetaBuilder;
use crate::scan::{Cursor, Dialect, MetaKind, RawLabel, check_duplicates, is_delimiter, label_set, quote, unescape};
use crate::{MetricMeta, MetricType, ParseError, RawSample};

/// What introduces an exemplar after a sample's value or timestamp.
const EXEMPLAR_START: &str = " # {";

pub(crate) fn parse<'a>(src: &'a str, each: impl FnMut(RawSample<'_, 'a>)) -> Result<Vec<MetricMeta>, ParseError> {
    let mut p =
        Parser { cur: Cursor::new(src), each, meta: MetaBuilder::default(), scratch: Vec::new(), exemplar: Vec::new() };
    loop {
        match p.cur.peek() {
            None => return Err(p.missing_eof()),
            Some(b'#') => {
                if p.comment()? {
                    break;
                }
            }
            Some(_) => p.sample()?,
        }
    }
    Ok(p.meta.finish())
}

struct Parser<'a, F> {
    cur: Cursor<'a>,
    /// Called with each sample.
    each: F,
    meta: MetaBuilder<'a>,
    /// The current sample's labels, reused across samples.
    scratch: Vec<RawLabel<'a>>,
    /// The current exemplar's labels: validated, then discarded.
    exemplar: Vec<RawLabel<'a>>,
}

impl<'a, F: FnMut(RawSample<'_, 'a>)> Parser<'a, F> {
    fn missing_eof(&self) -> ParseError {
        self.cur.error(self.cur.pos(), "unexpected end of input: data does not end with \"# EOF\"")
    }

    /// `# HELP name text`, `# TYPE name type`, `# UNIT name unit` or
    /// `# EOF`; returns true at `# EOF`, which must end the input.
    fn comment(&mut self) -> Result<bool, ParseError> {
        let start = self.cur.pos();
        if self.cur.eat_str("# EOF") {
            self.cur.eat(b'\n');
            if !self.cur.at_eof() {
                return Err(self.cur.error(self.cur.pos(), "unexpected data after \"# EOF\""));
            }
            return Ok(true);
        }
        let kind = if self.cur.eat_str("# HELP ") {
            MetaKind::Help
        } else if self.cur.eat_str("# TYPE ") {
            MetaKind::Type
        } else if self.cur.eat_str("# UNIT ") {
            MetaKind::Unit
        } else {
            let msg = "invalid comment: OpenMetrics allows only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\"";
            return Err(self.cur.error(start, msg));
        };

        let pos = self.cur.pos();
        let name =
            self.cur.metric_name().ok_or_else(|| self.cur.expected(pos, &format!("metric name after {kind}")))?;
        if !self.cur.eat(b' ') {
            return Err(self.cur.expected(self.cur.pos(), &format!("space and text after metric name in {kind}")));
        }
        let text = self.cur.take_line();
        if !self.cur.eat(b'\n') {
            return Err(self.missing_eof());
        }
        match kind {
            MetaKind::Help => self.meta.help(name, unescape(text, true)),
            MetaKind::Type => {
                let kind = metric_type(text)
                    .ok_or_else(|| self.cur.error(pos, format!("invalid metric type {}", quote(text))))?;
                self.meta.kind(name, kind);
            }
            MetaKind::Unit => {
                let suffixed = name.strip_suffix(text).is_some_and(|prefix| prefix.ends_with('_'));
                if !text.is_empty() && !suffixed {
                    let msg = format!("unit {} not a suffix of metric {}", quote(text), quote(name));
                    return Err(self.cur.error(pos, msg));
                }
                self.meta.unit(name, text);
            }
        }
        Ok(false)
    }

    /// `name[{labels}] value [timestamp] [# {labels} value [timestamp]]`
    fn sample(&mut self) -> Result<(), ParseError> {
        let start = self.cur.pos();
        let name = self.cur.metric_name().ok_or_else(|| self.cur.bad_metric_name(start))?;
        self.scratch.clear();
        self.scratch.push(RawLabel { name: METRIC_NAME, value: name });
        let has_labels = self.cur.eat(b'{');
        if has_labels {
            label_set(&mut self.cur, &mut self.scratch, Dialect::OpenMetrics)?;
        }
        let series = self.cur.since(start);

        if !self.cur.eat(b' ') {
            // "foo-bar 1": the name itself is malformed.
            if !has_labels && self.cur.peek().is_some_and(|b| !is_delimiter(b)) {
                return Err(self.cur.bad_metric_name(start));
            }
            return Err(self.cur.expected(self.cur.pos(), "value after metric"));
        }
        let value_pos = self.cur.pos();
        let token = self.cur.take_while(|b| b != b' ' && b != b'\n');
        let value = self.cur.value(value_pos, token, "metric")?;

        let mut timestamp_ms = None;
        if !self.cur.starts_with(EXEMPLAR_START) && self.cur.eat(b' ') {
            timestamp_ms = Some(self.timestamp("timestamp")?);
        }
        if self.cur.starts_with(EXEMPLAR_START) {
            self.exemplar(name)?;
        }
        match self.cur.peek() {
            Some(b'\n') => self.cur.bump(),
            None => return Err(self.missing_eof()),
            Some(_) => return Err(self.cur.expected(self.cur.pos(), "end of line")),
        }

        check_duplicates(&self.cur, start, &mut self.scratch)?;
        (self.each)(RawSample { series, timestamp_ms, value, raw: &self.scratch });
        Ok(())
    }

    /// ` # {labels} value [timestamp]`, checked and dropped. Only counters'
    /// `_total` and histograms' `_bucket` samples may carry one.
    fn exemplar(&mut self, metric: &str) -> Result<(), ParseError> {
        let pos = self.cur.pos() + 1;
        if !(metric.ends_with("_total") || metric.ends_with("_bucket")) {
            return Err(self.cur.error(pos, format!("metric name {} does not support exemplars", quote(metric))));
        }
        self.cur.eat_str(EXEMPLAR_START);
        self.exemplar.clear();
        label_set(&mut self.cur, &mut self.exemplar, Dialect::OpenMetrics)?;
        if !self.cur.eat(b' ') {
            return Err(self.cur.expected(self.cur.pos(), "value after exemplar labels"));
        }
        let value_pos = self.cur.pos();
        let token = self.cur.take_while(|b| b != b' ' && b != b'\n');
        self.cur.value(value_pos, token, "exemplar labels")?;
        if self.cur.eat(b' ') {
            self.timestamp("exemplar timestamp")?;
        }
        Ok(())
    }

    /// A timestamp in (float) seconds, converted to whole milliseconds by
    /// truncation as Prometheus does.
    fn timestamp(&mut self, what: &str) -> Result<i64, ParseError> {
        let pos = self.cur.pos();
        let token = self.cur.take_while(|b| b != b' ' && b != b'\n');
        match parse_float(token) {
            Ok(secs) if secs.is_finite() => Ok((secs * 1000.0) as i64),
            _ if token.is_empty() => Err(self.cur.expected(pos, what)),
            _ => Err(self.cur.error(pos, format!("invalid {what} {}", quote(token)))),
        }
    }
}

fn metric_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "unknown" => MetricType::Unknown,
        _ => return None,
    })
}
