//! The byte cursor and the lexical pieces both dialects share: names, label
//! sets, escapes, values and error reporting.

use std::fmt;

use pharos_model::{Label, Labels};

use crate::ParseError;
use crate::float::{NumError, parse_float};

/// Which dialect's lexical rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Prometheus text: blanks anywhere, optional commas, raw newlines in
    /// label values.
    Text,
    /// OpenMetrics: no blanks, a comma only between pairs, no raw newlines.
    OpenMetrics,
}

/// A metadata comment's keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKind {
    Help,
    Type,
    Unit,
}

impl fmt::Display for MetaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetaKind::Help => "HELP",
            MetaKind::Type => "TYPE",
            MetaKind::Unit => "UNIT",
        })
    }
}

/// A label as it appears in the input: the value still escaped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLabel<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: &'a str,
}

/// A position in the scrape body. Every accessor is bounds-checked, so no
/// input can make it panic; it only ever stops at ASCII bytes or the end,
/// which keeps every slice on a UTF-8 boundary.
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Cursor { src, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_eof(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// At a newline or the end of the input.
    pub(crate) fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
    }

    fn rest(&self) -> &'a [u8] {
        self.src.as_bytes().get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn starts_with(&self, s: &str) -> bool {
        self.rest().starts_with(s.as_bytes())
    }

    pub(crate) fn bump(&mut self) {
        if !self.at_eof() {
            self.pos += 1;
        }
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub(crate) fn eat_str(&mut self, s: &str) -> bool {
        let hit = self.starts_with(s);
        if hit {
            self.pos += s.len();
        }
        hit
    }

    /// Skips spaces and tabs; true if there were any.
    pub(crate) fn skip_blanks(&mut self) -> bool {
        let n = self.rest().iter().take_while(|&&b| is_blank(b)).count();
        self.pos += n;
        n > 0
    }

    /// Advances over the bytes `keep` accepts and returns them. `keep` must
    /// stop at ASCII bytes only, as all callers' predicates do.
    pub(crate) fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        self.pos += self.rest().iter().take_while(|&&b| keep(b)).count();
        self.slice(start, self.pos)
    }

    /// The rest of the current line, without its newline.
    pub(crate) fn take_line(&mut self) -> &'a str {
        self.take_while(|b| b != b'\n')
    }

    /// Skips past the next newline (or to the end).
    pub(crate) fn skip_line(&mut self) {
        self.take_line();
        self.eat(b'\n');
    }

    /// The input from `from` to the current position.
    pub(crate) fn since(&self, from: usize) -> &'a str {
        self.slice(from, self.pos)
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.src.get(from..to).unwrap_or_default()
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    pub(crate) fn metric_name(&mut self) -> Option<&'a str> {
        self.name(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    pub(crate) fn label_name(&mut self) -> Option<&'a str> {
        self.name(|b| b.is_ascii_alphabetic() || b == b'_')
    }

    fn name(&mut self, first: fn(u8) -> bool) -> Option<&'a str> {
        if !self.peek().is_some_and(first) {
            return None;
        }
        Some(self.take_while(|b| first(b) || b.is_ascii_digit()))
    }

    /// Reads a double-quoted label value, returning its raw (still escaped)
    /// contents. A backslash escapes any byte but a newline; raw newlines
    /// are allowed only in the text format, as Prometheus's lexer does.
    pub(crate) fn quoted(&mut self, dialect: Dialect) -> Result<&'a str, ParseError> {
        let open = self.pos;
        if !self.eat(b'"') {
            return Err(self.expected(open, "label value"));
        }
        let start = self.pos;
        loop {
            let special = self.rest().iter().position(|&b| matches!(b, b'"' | b'\\' | b'\n'));
            let Some(skip) = special else { break };
            self.pos += skip;
            match self.peek() {
                Some(b'"') => {
                    let value = self.slice(start, self.pos);
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') if !matches!(self.rest().get(1), None | Some(b'\n')) => self.pos += 2,
                Some(b'\n') if dialect == Dialect::Text => self.pos += 1,
                _ => break,
            }
        }
        Err(self.error(open, "unterminated label value"))
    }

    /// An error at byte offset `pos`, reported with its 1-based line.
    pub(crate) fn error(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        let before = self.src.as_bytes().get(..pos).unwrap_or(self.src.as_bytes());
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        ParseError::Syntax { line, msg: msg.into() }
    }

    /// "expected {what}, got {whatever is at pos}".
    pub(crate) fn expected(&self, pos: usize, what: &str) -> ParseError {
        self.error(pos, format!("expected {what}, got {}", self.describe(pos)))
    }

    /// An error for a missing or malformed metric name at `pos`; a bad name
    /// is quoted up to the next blank or brace, so "foo-bar" shows in full.
    pub(crate) fn bad_metric_name(&self, pos: usize) -> ParseError {
        self.bad_name(pos, "metric", |b| is_blank(b) || b == b'\n' || b == b'{')
    }

    /// An error for a missing or malformed label name at `pos`.
    pub(crate) fn bad_label_name(&self, pos: usize) -> ParseError {
        self.bad_name(pos, "label", is_delimiter)
    }

    fn bad_name(&self, pos: usize, kind: &str, stop: fn(u8) -> bool) -> ParseError {
        match self.src.as_bytes().get(pos) {
            Some(&b) if !is_delimiter(b) => {
                self.error(pos, format!("invalid {kind} name {}", quote(self.token_at(pos, stop))))
            }
            _ => self.expected(pos, &format!("{kind} name")),
        }
    }

    /// Parses a sample value, reporting failures against `token` at `pos`.
    pub(crate) fn value(&self, pos: usize, token: &str, after: &str) -> Result<f64, ParseError> {
        parse_float(token).map_err(|e| match e {
            NumError::Syntax if token.is_empty() => self.expected(pos, &format!("value after {after}")),
            NumError::Syntax => self.error(pos, format!("expected value after {after}, got {}", quote(token))),
            NumError::Range => self.error(pos, format!("value {} out of range", quote(token))),
        })
    }

    /// Describes what is at `pos` for an error message.
    fn describe(&self, pos: usize) -> String {
        match self.src.as_bytes().get(pos) {
            None => "end of input".to_owned(),
            Some(b'\n') => "end of line".to_owned(),
            Some(&b) if is_delimiter(b) => quote(self.slice(pos, pos + 1)),
            Some(_) => quote(self.token_at(pos, is_delimiter)),
        }
    }

    fn token_at(&self, pos: usize, stop: fn(u8) -> bool) -> &'a str {
        let rest = self.src.as_bytes().get(pos..).unwrap_or_default();
        let len = rest.iter().position(|&b| stop(b)).unwrap_or(rest.len());
        self.slice(pos, pos + len)
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Bytes that end a token in error messages.
pub(crate) fn is_delimiter(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'{' | b'}' | b',' | b'=' | b'"')
}

/// Quotes a token for an error message, shortening very long ones.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", s.get(..end).unwrap_or_default())
}

/// Parses label pairs after an opening `{`, through the closing `}`.
pub(crate) fn label_set<'a>(
    cur: &mut Cursor<'a>,
    out: &mut Vec<RawLabel<'a>>,
    dialect: Dialect,
) -> Result<(), ParseError> {
    let lenient = dialect == Dialect::Text;
    let skip = |cur: &mut Cursor<'a>| {
        if lenient {
            cur.skip_blanks();
        }
    };
    // OpenMetrics forbids a trailing comma; the text format allows it.
    let mut need_label = false;
    loop {
        skip(cur);
        if !need_label && cur.eat(b'}') {
            return Ok(());
        }
        let pos = cur.pos();
        let name = cur.label_name().ok_or_else(|| cur.bad_label_name(pos))?;
        skip(cur);
        if !cur.eat(b'=') {
            return Err(cur.expected(cur.pos(), &format!("\"=\" after label name {}", quote(name))));
        }
        skip(cur);
        let value = cur.quoted(dialect)?;
        out.push(RawLabel { name, value });
        skip(cur);
        if cur.eat(b',') {
            need_label = !lenient;
            continue;
        }
        // Like Prometheus, the text format needs no comma between pairs.
        if !lenient {
            if cur.eat(b'}') {
                return Ok(());
            }
            return Err(cur.expected(cur.pos(), "\",\" or \"}\" after label value"));
        }
    }
}

/// Resolves escapes like Go's `strings.Replacer` does for Prometheus:
/// `\\` and `\n` always, `\"` only when `quotes`; any other backslash stays.
pub(crate) fn unescape(raw: &str, quotes: bool) -> String {
    if !raw.contains('\\') {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let resolved = match chars.clone().next() {
            Some('n') => '\n',
            Some('\\') => '\\',
            Some('"') if quotes => '"',
            _ => {
                out.push('\\');
                continue;
            }
        };
        out.push(resolved);
        chars.next();
    }
    out
}

/// Rejects a repeated label name among a sample's scraped labels (the
/// metric name included), sorting them by name. `pos` locates the sample
/// for errors.
pub(crate) fn check_duplicates(cur: &Cursor<'_>, pos: usize, raw: &mut [RawLabel<'_>]) -> Result<(), ParseError> {
    raw.sort_unstable_by(|a, b| a.name.cmp(b.name));
    let dup = raw.windows(2).find_map(|w| match w {
        [a, b] if a.name == b.name => Some(a.name),
        _ => None,
    });
    match dup {
        Some(name) => Err(cur.error(pos, format!("duplicate label name {}", quote(name)))),
        None => Ok(()),
    }
}

/// Turns labels that passed [`check_duplicates`] into [`Labels`]: empty
/// values dropped, escapes resolved.
pub(crate) fn build_labels(raw: &[RawLabel<'_>]) -> Labels {
    let mut labels = Vec::with_capacity(raw.len());
    labels.extend(
        raw.iter()
            .filter(|l| !l.value.is_empty())
            .map(|l| Label { name: l.name.to_owned(), value: unescape(l.value, true) }),
    );
    Labels::new(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_matches_go_replacer() {
        assert_eq!(unescape(r#"a\\b\nc\"d\te\"#, true), "a\\b\nc\"d\\te\\");
        assert_eq!(unescape(r#"\\n"#, true), "\\n");
        assert_eq!(unescape(r#"say \"hi\""#, false), r#"say \"hi\""#);
        assert_eq!(unescape("plain ü", true), "plain ü");
    }

    #[test]
    fn quote_truncates_on_char_boundary() {
        let long = "ü".repeat(50);
        let q = quote(&long);
        assert!(q.ends_with("..."));
        assert!(q.len() < long.len());
    }
}
