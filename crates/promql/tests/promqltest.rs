//! Runs Prometheus's own PromQL test scripts (read at test time from the shared
//! folder, never copied into the repository) against the engine.
//!
//! The scripting language (see the folder's DSL.md): `load <step>` blocks of series,
//! `clear`, and `eval[_fail|_ordered] instant at <time> <expr>` followed by the
//! expected result, each block ending at a blank line. Like upstream's runner, every
//! successful instant eval is also run as a range query from `t-1m` to `t+1m` and the
//! middle step compared.
//!
//! `KNOWN_FAILING` lists the evals (file, line) that are known not to pass yet: the test
//! fails on any other failing eval, so regressions are caught while gaps are tracked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pharos_model::{Label, Labels, Sample, Series, stale_nan};
use pharos_promql::{Engine, MemoryQueryable, Value};
use promql_parser::parser::{AtModifier, Expr};

/// Evals known not to pass yet: (file name, line of the eval command).
const KNOWN_FAILING: &[(&str, usize)] = &[];

fn test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promqltest/v2.42")
}

// ---- script parsing ---------------------------------------------------------

#[derive(Debug)]
enum Expected {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
}

#[derive(Debug)]
enum Cmd {
    Load { series: Vec<Series> },
    Clear,
    Eval { line: usize, expr: String, t: i64, fail: bool, ordered: bool, expected: Expected },
}

/// Prometheus durations: `1h30m`, `5m`, `10s`, `100ms`, `1d`, `1w`, `1y`; bare `0`.
fn parse_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0i64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|e| format!("{e}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("bad duration unit {u:?} in {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn parse_number(s: &str) -> Result<f64, String> {
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

/// Parses `name{a="b", ...}` or `{...}` at the start of `s`; returns labels and the rest.
fn parse_metric(s: &str) -> Result<(Labels, &str), String> {
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

fn read_quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
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
fn expand_token(tok: &str) -> Result<Vec<Option<f64>>, String> {
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

fn parse_series_line(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let (labels, rest) = parse_metric(line)?;
    let mut vals = Vec::new();
    for tok in rest.split_whitespace() {
        vals.extend(expand_token(tok)?);
    }
    Ok((labels, vals))
}

fn parse_script(text: &str) -> Result<Vec<Cmd>, String> {
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
        let rest = rest.trim();
        // The block of lines that follows, up to a blank line (`clear` has none).
        let mut block = Vec::new();
        while !word.eq_ignore_ascii_case("clear") && i < lines.len() && !lines[i].is_empty() {
            block.push(lines[i].clone());
            i += 1;
        }
        match word.to_ascii_lowercase().as_str() {
            "clear" => cmds.push(Cmd::Clear),
            "load" => {
                let step = parse_duration(rest).map_err(|e| format!("line {lineno}: {e}"))?;
                let mut series = Vec::new();
                for b in &block {
                    let (labels, vals) = parse_series_line(b).map_err(|e| format!("line {lineno}: {e}"))?;
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
                cmds.push(Cmd::Load { series });
            }
            w if w.starts_with("eval") => {
                let fail = w == "eval_fail";
                let ordered = w == "eval_ordered";
                let rest = rest
                    .strip_prefix("instant")
                    .ok_or_else(|| format!("line {lineno}: only instant evals are supported"))?
                    .trim_start();
                let rest = rest.strip_prefix("at").ok_or(format!("line {lineno}: missing at"))?.trim_start();
                let (time, expr) = rest.split_once(char::is_whitespace).ok_or(format!("line {lineno}: no expr"))?;
                let t = parse_duration(time).map_err(|e| format!("line {lineno}: {e}"))?;
                let expected = if block.len() == 1 && parse_number(&block[0]).is_ok() {
                    Expected::Scalar(parse_number(&block[0])?)
                } else {
                    let mut v = Vec::new();
                    for b in &block {
                        let (labels, vals) = parse_series_line(b).map_err(|e| format!("line {lineno}: {e}"))?;
                        let Some(Some(val)) = vals.first().copied() else {
                            return Err(format!("line {lineno}: expected value missing"));
                        };
                        v.push((labels, val));
                    }
                    Expected::Vector(v)
                };
                cmds.push(Cmd::Eval { line: lineno, expr: expr.trim().to_string(), t, fail, ordered, expected });
            }
            other => return Err(format!("line {lineno}: unknown command {other:?}")),
        }
    }
    Ok(cmds)
}

// ---- comparison -------------------------------------------------------------

fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 0.000001;
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

fn compare(expected: &Expected, got: &[(Labels, f64)], scalar: Option<f64>, ordered: bool) -> Result<(), String> {
    match expected {
        Expected::Scalar(want) => match scalar {
            Some(v) if almost_equal(*want, v) => Ok(()),
            Some(v) => Err(format!("expected scalar {want} but got {v}")),
            None => Err(format!("expected scalar {want} but got vector {got:?}")),
        },
        Expected::Vector(want) => {
            if let Some(v) = scalar {
                return Err(format!("expected vector but got scalar {v}"));
            }
            if want.len() != got.len() {
                return Err(format!(
                    "expected {} samples, got {}:\n  want {want:?}\n  got  {got:?}",
                    want.len(),
                    got.len()
                ));
            }
            let index: HashMap<&Labels, (usize, f64)> =
                want.iter().enumerate().map(|(i, (l, v))| (l, (i, *v))).collect();
            for (pos, (l, v)) in got.iter().enumerate() {
                let Some(&(i, w)) = index.get(l) else {
                    return Err(format!("unexpected series {l} {v}; want {want:?}"));
                };
                if ordered && i != pos {
                    return Err(format!("{l} at position {pos}, expected at {i}"));
                }
                if !almost_equal(w, *v) {
                    return Err(format!("{l}: expected {w}, got {v}"));
                }
            }
            Ok(())
        }
    }
}

// ---- running ----------------------------------------------------------------

fn run_eval(
    engine: &Engine,
    store: &MemoryQueryable,
    expr: &str,
    t: i64,
    fail: bool,
    ordered: bool,
    expected: &Expected,
) -> Result<(), String> {
    let res = futures::executor::block_on(engine.instant(store, expr, t));
    let val = match (res, fail) {
        (Err(_), true) => return Ok(()),
        (Ok(v), true) => return Err(format!("expected error, got {v:?}")),
        (Err(e), false) => return Err(format!("unexpected error: {e}")),
        (Ok(v), false) => v,
    };
    let (vec, scalar) = match val {
        Value::Scalar { v, .. } => (vec![], Some(v)),
        Value::Vector(v) => (v.into_iter().map(|s| (s.labels, s.v)).collect(), None),
        other => return Err(format!("unexpected result type: {other:?}")),
    };
    compare(expected, &vec, scalar, ordered)?;
    if ordered {
        return Ok(());
    }
    // Range mode: t-1m..t+1m by 1m, compared at t.
    let res = futures::executor::block_on(engine.range(store, expr, t - 60_000, t + 60_000, 60_000))
        .map_err(|e| format!("range mode: unexpected error: {e}"))?;
    let Value::Matrix(m) = res else { return Err("range mode: not a matrix".into()) };
    let mut at_t = Vec::new();
    for s in m {
        if let Some(p) = s.samples.iter().find(|p| p.t == t) {
            at_t.push((s.labels, p.v));
        }
    }
    let range_scalar = if scalar.is_some() { at_t.first().map(|x| x.1) } else { None };
    let at_t = if scalar.is_some() { vec![] } else { at_t };
    compare(expected, &at_t, range_scalar, false).map_err(|e| format!("range mode: {e}"))
}

/// Functions whose result depends on the evaluation time itself.
const AT_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Sets `@ ts` on every selector and outermost subquery that has none; returns
/// false when the expression calls a function that is not step invariant.
fn set_at(e: &mut Expr, ts: SystemTime) -> bool {
    match e {
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert(AtModifier::At(ts));
            true
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert(AtModifier::At(ts));
            true
        }
        Expr::Subquery(sq) => {
            sq.at.get_or_insert(AtModifier::At(ts));
            contains_no_unsafe(&sq.expr)
        }
        Expr::Aggregate(a) => {
            let p = a.param.as_mut().is_none_or(|p| set_at(p, ts));
            set_at(&mut a.expr, ts) && p
        }
        Expr::Unary(u) => set_at(&mut u.expr, ts),
        Expr::Binary(b) => {
            let l = set_at(&mut b.lhs, ts);
            set_at(&mut b.rhs, ts) && l
        }
        Expr::Paren(p) => set_at(&mut p.expr, ts),
        Expr::Call(c) => {
            let mut ok = !AT_UNSAFE_FUNCTIONS.contains(&c.func.name);
            for a in c.args.args.iter_mut() {
                ok &= set_at(a, ts);
            }
            ok
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => true,
    }
}

fn contains_no_unsafe(e: &Expr) -> bool {
    match e {
        Expr::Subquery(sq) => contains_no_unsafe(&sq.expr),
        Expr::Aggregate(a) => a.param.as_ref().is_none_or(|p| contains_no_unsafe(p)) && contains_no_unsafe(&a.expr),
        Expr::Unary(u) => contains_no_unsafe(&u.expr),
        Expr::Binary(b) => contains_no_unsafe(&b.lhs) && contains_no_unsafe(&b.rhs),
        Expr::Paren(p) => contains_no_unsafe(&p.expr),
        Expr::Call(c) => {
            !AT_UNSAFE_FUNCTIONS.contains(&c.func.name) && c.args.args.iter().all(|a| contains_no_unsafe(a))
        }
        _ => true,
    }
}

/// Upstream's `atModifierTestCases`: the expression with `@ t` added, and the other
/// evaluation times to run it at.
fn at_modifier_variants(expr: &str, t: i64) -> Vec<(String, i64)> {
    let Ok(mut e) = promql_parser::parser::parse(expr) else { return vec![] };
    let ts = if t >= 0 {
        UNIX_EPOCH + Duration::from_millis(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    };
    if !set_at(&mut e, ts) {
        return vec![];
    }
    let s = e.to_string();
    let times = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
    times.into_iter().map(|et| (s.clone(), et)).collect()
}

struct FileResult {
    passed: usize,
    total: usize,
    failures: Vec<(usize, String, String)>,
}

fn run_file(path: &Path) -> Result<FileResult, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let cmds = parse_script(&text)?;
    let engine = Engine::default();
    let mut store = MemoryQueryable::default();
    let mut res = FileResult { passed: 0, total: 0, failures: vec![] };
    for c in cmds {
        match c {
            Cmd::Clear => store = MemoryQueryable::default(),
            Cmd::Load { series } => store.extend(series),
            Cmd::Eval { line, expr, t, fail, ordered, expected } => {
                res.total += 1;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_eval(&engine, &store, &expr, t, fail, ordered, &expected)?;
                    // Upstream's step-invariance variants: `@ t` on every selector,
                    // evaluated at other times, must give the same result.
                    for (at_expr, et) in at_modifier_variants(&expr, t) {
                        run_eval(&engine, &store, &at_expr, et, fail, ordered, &expected)
                            .map_err(|e| format!("@ variant {at_expr:?} at {et}ms: {e}"))?;
                    }
                    Ok(())
                }))
                .unwrap_or_else(|_| Err("panicked".into()));
                match outcome {
                    Ok(()) => res.passed += 1,
                    Err(e) => res.failures.push((line, expr, e)),
                }
            }
        }
    }
    Ok(res)
}

#[test]
fn prometheus_v2_42_test_scripts() {
    let dir = test_dir();
    if !dir.is_dir() {
        eprintln!("skipping: Prometheus test scripts not found at {}", dir.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();

    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let (mut all_passed, mut all_total) = (0, 0);
    println!("{:<24} {:>6} {:>6}", "file", "passed", "total");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let r = match run_file(f) {
            Ok(r) => r,
            Err(e) => {
                unexpected.push(format!("{name}: cannot run: {e}"));
                continue;
            }
        };
        println!("{name:<24} {:>6} {:>6}", r.passed, r.total);
        all_passed += r.passed;
        all_total += r.total;
        let failed: Vec<usize> = r.failures.iter().map(|f| f.0).collect();
        for (line, expr, err) in &r.failures {
            if !KNOWN_FAILING.contains(&(name.as_str(), *line)) {
                unexpected.push(format!("{name}:{line}: {expr}\n    {err}"));
            }
        }
        for (kf, kl) in KNOWN_FAILING {
            if *kf == name && !failed.contains(kl) {
                now_passing.push(format!("{kf}:{kl}"));
            }
        }
    }
    println!("{:<24} {all_passed:>6} {all_total:>6}", "TOTAL");
    if !now_passing.is_empty() {
        println!("known failures that now pass (remove from KNOWN_FAILING): {now_passing:?}");
    }
    if !unexpected.is_empty() {
        panic!("{} unexpected failures:\n{}", unexpected.len(), unexpected.join("\n"));
    }
}

#[test]
fn dsl_parsing() {
    assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
    assert_eq!(parse_duration("0").unwrap(), 0);
    assert_eq!(expand_token("0+10x2").unwrap(), vec![Some(0.0), Some(10.0), Some(20.0)]);
    assert_eq!(expand_token("1-1x1").unwrap(), vec![Some(1.0), Some(0.0)]);
    assert_eq!(expand_token("_x3").unwrap(), vec![None, None, None]);
    assert_eq!(expand_token("5x1").unwrap(), vec![Some(5.0), Some(5.0)]);
    assert_eq!(expand_token("-2-1x1").unwrap(), vec![Some(-2.0), Some(-3.0)]);
    assert_eq!(expand_token("1e-3").unwrap(), vec![Some(0.001)]);
    let (l, rest) = parse_metric(r#"m{a="b", c='d'} 1 2"#).unwrap();
    assert_eq!(l.to_string(), r#"m{a="b", c="d"}"#);
    assert_eq!(rest.trim(), "1 2");
    let (l, _) = parse_metric(r#"{__name__="x"} 1"#).unwrap();
    assert_eq!(l.metric_name(), Some("x"));
    let v = at_modifier_variants("sum(rate(x[1m])) + y", 10_000);
    assert_eq!(v.len(), 5);
    assert!(v[0].0.contains("x[1m] @ 10.000"), "{}", v[0].0);
    assert!(v[0].0.contains("y @ 10.000"), "{}", v[0].0);
    assert!(at_modifier_variants("time() + x", 10_000).is_empty());
}
