//! The test-script language of Prometheus's `promqltest` (see the shared folder's
//! DSL.md): both the v2.42 form (`eval[_fail|_ordered] instant at ...`) and the
//! current one (`eval range from .. to .. step ..`, `expect ...` lines,
//! `load_with_nhcb`, native-histogram `{{...}}` values).
//!
//! Native histograms are not stored by Pharos: series holding any are not loaded but
//! remembered (their metric names), so the runner can tell which evals touch them.

use pharos_model::{Label, Labels, Sample, Series, stale_nan};

/// What an eval expects as its result.
#[derive(Debug)]
pub enum Expected {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
    String(String),
    /// Per series, the value at `start + i * step` (`None`: no point there).
    Matrix {
        start: i64,
        step: i64,
        series: Vec<(Labels, Vec<Option<f64>>)>,
    },
}

/// How an `expect fail` line matches the error message.
#[derive(Debug)]
pub enum FailMatch {
    Any,
    Msg(String),
    Regex(String),
}

/// An `expect warn ...` / `expect info ...` line.
#[derive(Debug)]
pub struct AnnotationExpect {
    pub warning: bool,
    pub m: FailMatch,
}

#[derive(Debug)]
pub enum Mode {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug)]
pub struct Eval {
    pub line: usize,
    pub expr: String,
    pub mode: Mode,
    pub fail: Option<FailMatch>,
    pub ordered: bool,
    /// `expect warn` / `expect info` lines (and the old `eval_warn`/`eval_info`).
    pub annotations: Vec<AnnotationExpect>,
    /// `expect no_warn` / `expect no_info`.
    pub no_warn: bool,
    pub no_info: bool,
    /// The expected result mentions a native histogram.
    pub histogram_result: bool,
    pub expected: Expected,
}

#[derive(Debug)]
pub enum Cmd {
    /// Float series, and the label sets of series that held native histograms
    /// (for `load_with_nhcb`, also the histograms built from `_bucket` series).
    Load {
        series: Vec<Series>,
        histogram_series: Vec<Labels>,
    },
    Clear,
    Eval(Box<Eval>),
}

/// Prometheus durations (`1h30m`, `5m`, bare seconds), optionally negative.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    match s.strip_prefix('-') {
        Some(r) => pharos_model::parse_duration_ms(r).map(|v| -v),
        None => pharos_model::parse_duration_ms(s),
    }
}

pub fn parse_number(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Ok(f64::INFINITY),
        "-inf" => return Ok(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Ok(f64::NAN),
        _ => {}
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).map(|v| v as f64).map_err(|e| e.to_string());
    }
    t.parse::<f64>().map_err(|e| format!("bad number {t:?}: {e}"))
}

/// Parses `name{a="b", ...}`, `{...}` or `{"utf8.name", a="b"}` at the start of `s`;
/// returns labels and the rest.
pub fn parse_metric(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let name_end = s.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(s.len());
    if name_end > 0 {
        labels.push(Label { name: "__name__".into(), value: s[..name_end].to_string() });
    }
    let mut rest = &s[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        loop {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated label set in {s:?}"));
            }
            if chars[i] == '}' {
                i += 1;
                break;
            }
            let (name, ni) = if chars[i] == '"' {
                read_quoted(&chars, i)?
            } else {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                (chars[start..i].iter().collect(), i)
            };
            i = ni;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if chars.get(i) != Some(&'=') {
                // A lone quoted string is the metric name.
                if chars[ni - 1] == '"' && matches!(chars.get(i), Some(',') | Some('}')) {
                    labels.push(Label { name: "__name__".into(), value: name });
                    continue;
                }
                return Err(format!("expected = in {s:?}"));
            }
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            let (value, vi) = read_quoted(&chars, i)?;
            i = vi;
            labels.push(Label { name, value });
        }
        let consumed: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
        rest = &body[consumed..];
    }
    Ok((Labels::new(labels), rest))
}

pub fn read_quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let q = *chars.get(start).ok_or("expected quoted string")?;
    if q != '"' && q != '\'' && q != '`' {
        return Err(format!("expected quote, got {q:?}"));
    }
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == q {
            return Ok((out, i + 1));
        }
        if c == '\\' && q != '`' {
            i += 1;
            match chars.get(i) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('\'') => out.push('\''),
                Some(c) => {
                    out.push('\\');
                    out.push(*c);
                }
                None => return Err("dangling escape".into()),
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    Err("unterminated string".into())
}

/// Expands one value token: `_`, `_xN`, `stale`, `v`, `vxN`, `a+bxN`, `a-bxN`.
pub fn expand_token(tok: &str) -> Result<Vec<Option<f64>>, String> {
    if tok == "_" {
        return Ok(vec![None]);
    }
    if tok == "stale" {
        return Ok(vec![Some(stale_nan())]);
    }
    if let Some((lhs, n)) = tok.rsplit_once('x')
        && let Ok(n) = n.parse::<usize>()
    {
        if lhs == "_" {
            return Ok(vec![None; n]);
        }
        let bytes = lhs.as_bytes();
        let split =
            (1..bytes.len()).find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
        return Ok(match split {
            Some(i) => {
                let mut a = parse_number(&lhs[..i])?;
                let b = parse_number(&lhs[i..])?;
                let mut out = vec![Some(a)];
                for _ in 0..n {
                    a += b;
                    out.push(Some(a));
                }
                out
            }
            None => vec![Some(parse_number(lhs)?); n + 1],
        });
    }
    Ok(vec![Some(parse_number(tok)?)])
}

/// Labels and values (`None`: no sample at that step) of a series line.
pub type SeriesLine = (Labels, Option<Vec<Option<f64>>>);

/// A series line; `None` for the values when they include a native histogram or
/// are start timestamps.
pub fn parse_series_line(line: &str) -> Result<SeriesLine, String> {
    let (labels, rest) = parse_metric(line)?;
    // Native histograms, or start timestamps (`metric@st ...`, experimental).
    if rest.contains("{{") || rest.starts_with("@st") || labels.metric_name().is_some_and(|n| n.ends_with("@st")) {
        return Ok((labels, None));
    }
    let mut vals = Vec::new();
    for tok in rest.split_whitespace() {
        vals.extend(expand_token(tok)?);
    }
    Ok((labels, Some(vals)))
}

/// `from <a> to <b> step <c>` after `eval range` or `expect range vector`.
fn parse_from_to_step(s: &str) -> Result<(i64, i64, i64, &str), String> {
    // Six words, then the rest (the expression) as written.
    let mut words = Vec::with_capacity(6);
    let mut rest = s.trim_start();
    while words.len() < 6 && !rest.is_empty() {
        let (w, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        words.push(w);
        rest = r.trim_start();
    }
    if words.len() < 6 || words[0] != "from" || words[2] != "to" || words[4] != "step" {
        return Err(format!("expected `from .. to .. step ..` in {s:?}"));
    }
    Ok((parse_duration(words[1])?, parse_duration(words[3])?, parse_duration(words[5])?, rest.trim()))
}

fn parse_fail_match(rest: &str) -> Result<FailMatch, String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(FailMatch::Any);
    }
    let unquote = |s: &str| {
        let s = s.trim();
        if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') { s[1..s.len() - 1].to_string() } else { s.into() }
    };
    if let Some(m) = rest.strip_prefix("msg:") {
        return Ok(FailMatch::Msg(unquote(m)));
    }
    if let Some(m) = rest.strip_prefix("regex:") {
        return Ok(FailMatch::Regex(unquote(m)));
    }
    Err(format!("bad expect fail line {rest:?}"))
}

fn parse_eval(word: &str, rest: &str, block: &[String], lineno: usize) -> Result<Eval, String> {
    let err = |e: String| format!("line {lineno}: {e}");
    let mut fail = (word == "eval_fail").then_some(FailMatch::Any);
    let mut ordered = word == "eval_ordered";
    let mut annotations = Vec::new();
    if word == "eval_warn" || word == "eval_info" {
        annotations.push(AnnotationExpect { warning: word == "eval_warn", m: FailMatch::Any });
    }
    let (mut no_warn, mut no_info) = (false, false);
    let (mode, expr) = if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start().strip_prefix("at").ok_or_else(|| err("missing at".into()))?.trim_start();
        let (time, expr) = r.split_once(char::is_whitespace).ok_or_else(|| err("no expr".into()))?;
        (Mode::Instant(parse_duration(time).map_err(err)?), expr.trim())
    } else if let Some(r) = rest.strip_prefix("range") {
        let (start, end, step, expr) = parse_from_to_step(r.trim_start()).map_err(err)?;
        (Mode::Range { start, end, step }, expr)
    } else {
        return Err(err(format!("unknown eval form {rest:?}")));
    };
    let mut string = None;
    let mut range_vector = None;
    let mut series_lines = Vec::new();
    for b in block {
        if let Some(e) = b.strip_prefix("expect ") {
            let e = e.trim();
            let (kind, tail) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
            match kind {
                "fail" => fail = Some(parse_fail_match(tail).map_err(err)?),
                "ordered" => ordered = true,
                "warn" | "info" => {
                    let m = parse_fail_match(tail).map_err(err)?;
                    annotations.push(AnnotationExpect { warning: kind == "warn", m });
                }
                "no_warn" => no_warn = true,
                "no_info" => no_info = true,
                "string" => {
                    let chars: Vec<char> = tail.trim().chars().collect();
                    string = Some(read_quoted(&chars, 0).map_err(err)?.0);
                }
                "range" => {
                    let r = tail.trim().strip_prefix("vector").ok_or_else(|| err(format!("bad expect {e:?}")))?;
                    let (s, _, st, _) = parse_from_to_step(r.trim()).map_err(err)?;
                    range_vector = Some((s, st));
                }
                _ => return Err(err(format!("unknown expectation {e:?}"))),
            }
        } else if let Some(m) = b.strip_prefix("expected_fail_message ") {
            fail = Some(FailMatch::Msg(m.trim().to_string()));
        } else if let Some(m) = b.strip_prefix("expected_fail_regexp ") {
            fail = Some(FailMatch::Regex(m.trim().to_string()));
        } else {
            series_lines.push(b.as_str());
        }
    }
    let mut histogram_result = false;
    let expected = if let Some(s) = string {
        Expected::String(s)
    } else if series_lines.len() == 1 && parse_number(series_lines[0]).is_ok() {
        Expected::Scalar(parse_number(series_lines[0])?)
    } else {
        let mut series = Vec::new();
        for b in &series_lines {
            let (labels, vals) = parse_series_line(b).map_err(err)?;
            match vals {
                Some(v) => series.push((labels, v)),
                None => histogram_result = true,
            }
        }
        let matrix = match (&mode, range_vector) {
            (_, Some((start, step))) => Some((start, step)),
            (Mode::Range { start, step, .. }, None) => Some((*start, *step)),
            _ => None,
        };
        match matrix {
            Some((start, step)) => Expected::Matrix { start, step, series },
            None => {
                let mut v = Vec::new();
                for (labels, vals) in series {
                    let Some(Some(val)) = vals.first().copied() else {
                        return Err(err("expected value missing".into()));
                    };
                    v.push((labels, val));
                }
                Expected::Vector(v)
            }
        }
    };
    Ok(Eval {
        line: lineno,
        expr: expr.to_string(),
        mode,
        fail,
        ordered,
        annotations,
        no_warn,
        no_info,
        histogram_result,
        expected,
    })
}

pub fn parse_script(text: &str) -> Result<Vec<Cmd>, String> {
    // Like upstream, comment lines count as blank lines (they end a block).
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') { String::new() } else { t.to_string() }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        let lineno = i + 1;
        i += 1;
        if l.is_empty() {
            continue;
        }
        let (word, rest) = l.split_once(char::is_whitespace).unwrap_or((l.as_str(), ""));
        let word = word.to_ascii_lowercase();
        let rest = rest.trim();
        // The block of lines that follows, up to a blank line (`clear` has none).
        let mut block = Vec::new();
        while word != "clear" && i < lines.len() && !lines[i].is_empty() {
            block.push(lines[i].clone());
            i += 1;
        }
        match word.as_str() {
            "clear" => cmds.push(Cmd::Clear),
            "load" | "load_with_nhcb" => {
                let step = parse_duration(rest).map_err(|e| format!("line {lineno}: {e}"))?;
                let mut series = Vec::new();
                let mut histogram_series = Vec::new();
                for b in &block {
                    let (labels, vals) = parse_series_line(b).map_err(|e| format!("line {lineno}: {e}"))?;
                    let name = labels.metric_name().unwrap_or("").to_string();
                    if word == "load_with_nhcb"
                        && let Some(base) = name.strip_suffix("_bucket")
                    {
                        // Also loaded as a native histogram with custom buckets named `base`.
                        let mut h = labels.without(&["le"]);
                        h.set("__name__", base);
                        histogram_series.push(h);
                    }
                    let Some(vals) = vals else {
                        histogram_series.push(labels);
                        continue;
                    };
                    let samples = vals
                        .iter()
                        .enumerate()
                        .filter_map(|(j, v)| v.map(|v| Sample::new(j as i64 * step, v)))
                        .collect();
                    // Like upstream's loader, a series defined twice in one load keeps
                    // the later definition.
                    series.retain(|s: &Series| s.labels != labels);
                    series.push(Series::new(labels, samples));
                }
                cmds.push(Cmd::Load { series, histogram_series });
            }
            w if w.starts_with("eval") => cmds.push(Cmd::Eval(Box::new(parse_eval(w, rest, &block, lineno)?))),
            other => return Err(format!("line {lineno}: unknown command {other:?}")),
        }
    }
    Ok(cmds)
}
