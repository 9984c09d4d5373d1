//! Where expressions start in the query text, for annotation positions.
//!
//! The `promql-parser` AST carries no positions, so the query is scanned here into the
//! *leading tokens* of expression nodes, in source order: metric names and `{` of
//! selectors, function and aggregation names, `(` of parenthesised expressions, unary
//! `-`, and number and string literals. Everything that starts no node is skipped:
//! matchers, `[range:step]`, `by`/`without`/`on`/`ignoring`/`group_*` label lists,
//! `offset`/`@` modifiers, binary operators and keywords.
//!
//! Lowering walks the AST in source order and takes the next leading token for every
//! node that has one (binary expressions, subqueries and range selectors start where
//! their first operand starts). `(` leads the parser dropped (around aggregation
//! parameters) are skipped; otherwise a node whose expected kind does not match the next
//! token stops the stream, and later nodes get no position rather than a wrong one.

/// What kind of node a leading token starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    Selector,
    Call,
    Aggregate,
    Paren,
    Neg,
    Number,
    Str,
}

/// The leading tokens of `query`: byte offset and kind, in source order.
pub(crate) fn leads(query: &str) -> Vec<(usize, Lead)> {
    let toks = tokenize(query);
    let mut out = Vec::new();
    let mut i = 0;
    // The previous token ends an operand (so `-` after it is binary).
    let mut after_operand = false;
    // The next `(` opens a call's or aggregation's arguments.
    let mut args_next = false;
    while i < toks.len() {
        let (pos, tok) = toks[i];
        let next = toks.get(i + 1).map(|t| t.1);
        i += 1;
        match tok {
            Tok::Ident(w) => {
                let lw = w.to_ascii_lowercase();
                match lw.as_str() {
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "fill" | "fill_left"
                    | "fill_right" => {
                        if next == Some(Tok::Open('(')) {
                            i = skip_group(&toks, i, '(', ')');
                        }
                        if matches!(lw.as_str(), "on" | "ignoring" | "group_left" | "group_right") {
                            after_operand = false;
                        }
                    }
                    "bool" | "and" | "or" | "unless" | "atan2" => after_operand = false,
                    "offset" => {
                        i = skip_sign(&toks, i) + 1;
                        after_operand = true;
                    }
                    "inf" | "nan" if next != Some(Tok::Open('(')) && next != Some(Tok::Open('{')) => {
                        out.push((pos, Lead::Number));
                        after_operand = true;
                    }
                    _ if is_aggregation(&lw) && matches!(next, Some(Tok::Open('('))) => {
                        out.push((pos, Lead::Aggregate));
                        args_next = true;
                        after_operand = false;
                    }
                    _ if is_aggregation(&lw) && matches!(next, Some(Tok::Ident(n)) if is_grouping(n)) => {
                        out.push((pos, Lead::Aggregate));
                        args_next = true;
                        after_operand = false;
                    }
                    _ if next == Some(Tok::Open('(')) => {
                        out.push((pos, Lead::Call));
                        args_next = true;
                        after_operand = false;
                    }
                    _ => {
                        out.push((pos, Lead::Selector));
                        if next == Some(Tok::Open('{')) {
                            i = skip_group(&toks, i, '{', '}');
                        }
                        after_operand = true;
                    }
                }
            }
            Tok::Open('{') => {
                out.push((pos, Lead::Selector));
                i = skip_group(&toks, i - 1, '{', '}');
                after_operand = true;
            }
            Tok::Open('[') => {
                i = skip_group(&toks, i - 1, '[', ']');
                after_operand = true;
            }
            Tok::Open(_) => {
                if !std::mem::take(&mut args_next) {
                    out.push((pos, Lead::Paren));
                }
                after_operand = false;
            }
            Tok::Close(_) => after_operand = true,
            Tok::Number => {
                out.push((pos, Lead::Number));
                after_operand = true;
            }
            Tok::Str => {
                out.push((pos, Lead::Str));
                after_operand = true;
            }
            Tok::At => {
                i = skip_sign(&toks, i);
                // `@ start()` / `@ end()`.
                if matches!(toks.get(i + 1), Some((_, Tok::Open('(')))) {
                    i = skip_group(&toks, i + 1, '(', ')');
                } else {
                    i += 1;
                }
                after_operand = true;
            }
            Tok::Op(c) => {
                if !after_operand && c == '-' {
                    out.push((pos, Lead::Neg));
                }
                after_operand = false;
            }
            Tok::Comma => after_operand = false,
        }
    }
    out
}

fn is_aggregation(w: &str) -> bool {
    matches!(
        w,
        "sum"
            | "avg"
            | "count"
            | "min"
            | "max"
            | "group"
            | "stddev"
            | "stdvar"
            | "topk"
            | "bottomk"
            | "count_values"
            | "quantile"
            | "limitk"
            | "limit_ratio"
    )
}

fn is_grouping(w: &str) -> bool {
    w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without")
}

/// Skips one `+`/`-`; the index of the token after it.
fn skip_sign(toks: &[(usize, Tok<'_>)], i: usize) -> usize {
    match toks.get(i) {
        Some((_, Tok::Op('+' | '-'))) => i + 1,
        _ => i,
    }
}

/// `toks[i]` is the opening bracket; the index after its matching close.
fn skip_group(toks: &[(usize, Tok<'_>)], i: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < toks.len() {
        match toks[j].1 {
            Tok::Open(c) if c == open => depth += 1,
            Tok::Close(c) if c == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    toks.len()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    Ident(&'a str),
    Number,
    Str,
    Open(char),
    Close(char),
    Comma,
    At,
    /// Operators and `=`/`!`/`~`/`:` (only the first character is kept).
    Op(char),
}

pub(crate) fn tokenize(q: &str) -> Vec<(usize, Tok<'_>)> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                i += 1;
                out.push((start, Tok::Str));
            }
            b'(' | b'{' | b'[' => {
                i += 1;
                out.push((start, Tok::Open(c as char)));
            }
            b')' | b'}' | b']' => {
                i += 1;
                out.push((start, Tok::Close(c as char)));
            }
            b',' => {
                i += 1;
                out.push((start, Tok::Comma));
            }
            b'@' => {
                i += 1;
                out.push((start, Tok::At));
            }
            _ if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                i += 1;
                while i < b.len() {
                    let d = b[i];
                    let exp_sign =
                        (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E') && !q[start..i].starts_with("0x");
                    if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push((start, Tok::Number));
            }
            _ if c.is_ascii_alphabetic()
                || c == b'_'
                || c == b':' && out.last().is_some_and(|t| t.1 != Tok::Number) =>
            {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                out.push((start, Tok::Ident(&q[start..i])));
            }
            _ => {
                // One operator; multi-character ones (`==`, `=~`, `>=`) need no more.
                i += q[i..].chars().next().map_or(1, char::len_utf8);
                out.push((start, Tok::Op(c as char)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<(usize, Lead)> {
        leads(q)
    }

    #[test]
    fn leading_tokens_in_source_order() {
        use Lead::*;
        assert_eq!(kinds("histogram_quantile(0.5, series)"), vec![(0, Call), (19, Number), (24, Selector)]);
        assert_eq!(
            kinds(r#"count(limit_ratio(1.1, http_requests) and http_requests)"#),
            vec![(0, Aggregate), (6, Aggregate), (18, Number), (23, Selector), (42, Selector)]
        );
        assert_eq!(
            kinds(r#"sum by (a) (rate(x{a="b"}[5m] offset -1m @ end())) - -(1)"#),
            vec![(0, Aggregate), (12, Call), (17, Selector), (53, Neg), (54, Paren), (55, Number)]
        );
        assert_eq!(kinds("-1 + {__name__=\"x\"}[1m:10s]"), vec![(0, Neg), (1, Number), (5, Selector)]);
        assert_eq!(kinds("a / on(b) group_left(c) (d)"), vec![(0, Selector), (24, Paren), (25, Selector)]);
        assert_eq!(kinds("sum(x) without (y) > bool Inf"), vec![(0, Aggregate), (4, Selector), (26, Number)]);
    }
}
