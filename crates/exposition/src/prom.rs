//! The Prometheus text format 0.0.4, with the leniency of Prometheus's
//! `PromParser`: blanks (spaces, tabs) around any token, blank lines,
//! free-form `#` comments, and integer millisecond timestamps.

use pharos_model::METRIC_NAME;

use crate::float::{NumError, parse_int};
use crate::meta::MetaBuilder;
use crate::scan::{Cursor, Dialect, MetaKind, RawLabel, check_duplicates, label_set, quote, unescape};
use crate::{MetricMeta, MetricType, ParseError, RawSample};

pub(crate) fn parse<'a>(src: &'a str, each: impl FnMut(RawSample<'_, 'a>)) -> Result<Vec<MetricMeta>, ParseError> {
    let mut p = Parser { cur: Cursor::new(src), each, meta: MetaBuilder::default(), scratch: Vec::new() };
    loop {
        p.cur.skip_blanks();
        match p.cur.peek() {
            None => break,
            Some(b'\n') => p.cur.bump(),
            Some(b'#') => p.comment()?,
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
}

impl<'a, F: FnMut(RawSample<'_, 'a>)> Parser<'a, F> {
    /// A line starting with `#`: `# HELP name text`, `# TYPE name type`, or
    /// any other comment, which is skipped.
    fn comment(&mut self) -> Result<(), ParseError> {
        self.cur.bump();
        let Some(kind) = self.keyword() else {
            self.cur.skip_line();
            return Ok(());
        };
        let pos = self.cur.pos();
        let name =
            self.cur.metric_name().ok_or_else(|| self.cur.expected(pos, &format!("metric name after {kind}")))?;
        // The text is the rest of the line after the blank ending the name;
        // as in Prometheus's lexer, a text of blanks only is empty.
        let text = if self.cur.at_eol() {
            ""
        } else if self.cur.eat(b' ') || self.cur.eat(b'\t') {
            let line = self.cur.take_line();
            if line.bytes().all(|b| b == b' ' || b == b'\t') { "" } else { line }
        } else {
            return Err(self.cur.expected(self.cur.pos(), &format!("blank after metric name in {kind}")));
        };
        self.cur.eat(b'\n');
        match kind {
            MetaKind::Type => {
                let kind = metric_type(text)
                    .ok_or_else(|| self.cur.error(pos, format!("invalid metric type {}", quote(text))))?;
                self.meta.kind(name, kind);
            }
            _ => self.meta.help(name, unescape(text, false)),
        }
        Ok(())
    }

    /// After `#`: `HELP` or `TYPE`, each surrounded by blanks.
    fn keyword(&mut self) -> Option<MetaKind> {
        if !self.cur.skip_blanks() {
            return None;
        }
        let kind = if self.cur.eat_str("HELP") {
            MetaKind::Help
        } else if self.cur.eat_str("TYPE") {
            MetaKind::Type
        } else {
            return None;
        };
        self.cur.skip_blanks().then_some(kind)
    }

    /// `name[{labels}] value [timestamp]`
    fn sample(&mut self) -> Result<(), ParseError> {
        let start = self.cur.pos();
        let name = self.cur.metric_name().ok_or_else(|| self.cur.bad_metric_name(start))?;
        let name_end = self.cur.pos();
        self.scratch.clear();
        self.scratch.push(RawLabel { name: METRIC_NAME, value: name });
        self.cur.skip_blanks();
        let mut series = name;
        if self.cur.eat(b'{') {
            label_set(&mut self.cur, &mut self.scratch, Dialect::Text)?;
            series = self.cur.since(start);
            self.cur.skip_blanks();
        }

        let value_pos = self.cur.pos();
        let token = self.cur.take_while(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'{'));
        // Like Prometheus, "foo1.5" is name "foo1" and value ".5"; when such a
        // glued value is not a number, the name was what went wrong.
        let glued = value_pos == name_end && !token.is_empty();
        let value = self
            .cur
            .value(value_pos, token, "metric")
            .map_err(|e| if glued { self.cur.bad_metric_name(start) } else { e })?;

        self.cur.skip_blanks();
        let timestamp_ms = if self.cur.at_eol() { None } else { Some(self.timestamp()?) };
        self.cur.eat(b'\n');

        check_duplicates(&self.cur, start, &mut self.scratch)?;
        (self.each)(RawSample { series, timestamp_ms, value, raw: &self.scratch });
        Ok(())
    }

    /// An integer millisecond timestamp, which must end the line.
    fn timestamp(&mut self) -> Result<i64, ParseError> {
        let pos = self.cur.pos();
        let token = self.cur.take_while(|b| !matches!(b, b' ' | b'\t' | b'\n'));
        let ts = parse_int(token).map_err(|e| match e {
            NumError::Syntax => self.cur.error(pos, format!("invalid timestamp {}", quote(token))),
            NumError::Range => self.cur.error(pos, format!("timestamp {} out of range", quote(token))),
        })?;
        self.cur.skip_blanks();
        if !self.cur.at_eol() {
            return Err(self.cur.expected(self.cur.pos(), "end of line after timestamp"));
        }
        Ok(ts)
    }
}

fn metric_type(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" => MetricType::Unknown,
        _ => return None,
    })
}
