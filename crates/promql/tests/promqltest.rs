//! Runs Prometheus's own PromQL test scripts (read at test time from the shared
//! folder, never copied into the repository) against the engine: the v2.42 scripts
//! with the engine's default (Prometheus 2) semantics, and the current (3.x) scripts
//! with [`Compat::Prometheus3`].
//!
//! The script language is parsed in [`dsl`]. Like upstream's runner, every successful
//! instant eval is also run as a range query from `t-1m` to `t+1m` (middle step
//! compared) and, unless it calls a time-dependent function, with `@ t` added to every
//! selector and evaluated at other times.
//!
//! Every eval ends up in exactly one bucket, printed per file (with
//! `PROMQLTEST_VERBOSE=1`, every skipped eval is printed with its reason and error):
//! - passed;
//! - skipped, with a reason: the expected result holds a native histogram or a
//!   selector of the expression selects series that held native histograms (not
//!   stored by Pharos, so not loaded), the `promql-parser` crate cannot parse it, or it
//!   needs an experimental feature flag (whole files, see `EXPERIMENTAL_FILES`);
//! - failed: the test fails unless the eval is listed in `KNOWN_FAILING`, so
//!   regressions are caught while gaps are tracked.
//!
//! Annotations are checked as upstream's DSL says: every `expect warn`/`expect info`
//! line (`msg:` exact, `regex:`, or bare) must match one of the query's warnings or
//! infos, and once a kind has such a line every annotation of that kind must match
//! one; `expect no_warn`/`no_info` require none. They are checked on the eval as
//! written and on its `@` re-runs, as upstream does (scripts match positions loosely
//! where re-printing shifts them), not on the range-mode re-run.

#![allow(clippy::unwrap_used)]

#[path = "promqltest/dsl.rs"]
mod dsl;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dsl::{Cmd, Eval, Expected, FailMatch, Mode};
use pharos_model::Matcher;
use pharos_model::{Labels, Series};
use pharos_promql::{Compat, Engine, EngineOptions, MemoryQueryable, QueryResult, Value};
use promql_parser::parser::{AtModifier, Expr};

/// Evals known not to pass yet: file name, lines of the eval commands. Empty: every
/// eval of the non-experimental files passes or is skipped with a reason.
const KNOWN_FAILING: &[(&str, &[usize])] = &[];

/// Files of `current/` that exercise experimental features (upstream runs them with
/// feature flags on): their failures are skipped with this reason, and the number of
/// passing evals must not drop below the last figure measured (since annotations are
/// checked, evals that expect native-histogram warnings or infos no longer pass).
const EXPERIMENTAL_FILES: &[(&str, &str, usize)] = &[
    ("duration_expression.test", "duration expressions", 8),
    ("extended_vectors.test", "anchored/smoothed range selectors", 30),
    ("fill-modifier.test", "fill modifiers", 1),
    ("info.test", "info()", 1),
    ("name_label_dropping.test", "delayed __name__ removal", 22),
    ("native_histograms.test", "native histograms", 104),
    ("start_timestamps.test", "start timestamps", 9),
    ("type_and_unit.test", "type and unit labels", 43),
];

fn shared_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/promqltest").join(sub)
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

fn compare_vector(want: &[(Labels, f64)], got: &[(Labels, f64)], ordered: bool) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!("expected {} samples, got {}:\n  want {want:?}\n  got  {got:?}", want.len(), got.len()));
    }
    let index: HashMap<&Labels, (usize, f64)> = want.iter().enumerate().map(|(i, (l, v))| (l, (i, *v))).collect();
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

fn compare_matrix(start: i64, step: i64, want: &[(Labels, Vec<Option<f64>>)], got: &[Series]) -> Result<(), String> {
    let want: HashMap<&Labels, Vec<(i64, f64)>> = want
        .iter()
        .map(|(l, vals)| {
            let pts = vals
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (start + i as i64 * step, v)))
                .collect::<Vec<_>>();
            (l, pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let got: Vec<&Series> = got.iter().filter(|s| !s.samples.is_empty()).collect();
    if want.len() != got.len() {
        let names: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        return Err(format!("expected {} series, got {}: {names:?}", want.len(), got.len()));
    }
    for s in got {
        let Some(w) = want.get(&s.labels) else {
            return Err(format!("unexpected series {}", s.labels));
        };
        let g: Vec<(i64, f64)> = s.samples.iter().map(|p| (p.t, p.v)).collect();
        let same = w.len() == g.len() && w.iter().zip(&g).all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
        if !same {
            return Err(format!("{}: expected {w:?}, got {g:?}", s.labels));
        }
    }
    Ok(())
}

fn check_value(expected: &Expected, got: Value, ordered: bool) -> Result<(), String> {
    match (expected, got) {
        (Expected::Scalar(w), Value::Scalar { v, .. }) if almost_equal(*w, v) => Ok(()),
        (Expected::String(w), Value::String { s, .. }) if *w == s => Ok(()),
        (Expected::Vector(w), Value::Vector(v)) => {
            let got: Vec<(Labels, f64)> = v.into_iter().map(|s| (s.labels, s.v)).collect();
            compare_vector(w, &got, ordered)
        }
        (Expected::Matrix { start, step, series }, Value::Matrix(m)) => compare_matrix(*start, *step, series, &m),
        (w, g) => Err(format!("expected {w:?}, got {g:?}")),
    }
}

/// The eval's `expect warn`/`info`/`no_warn`/`no_info` lines against the result.
fn check_annotations(e: &Eval, r: &QueryResult) -> Result<(), String> {
    for (warning, got, none) in [(true, &r.warnings, e.no_warn), (false, &r.infos, e.no_info)] {
        let kind = if warning { "warn" } else { "info" };
        if none && !got.is_empty() {
            return Err(format!("expected no {kind}, got {got:?}"));
        }
        let want: Vec<&FailMatch> = e.annotations.iter().filter(|a| a.warning == warning).map(|a| &a.m).collect();
        for m in &want {
            if !got.iter().any(|g| check_fail(m, g).is_ok()) {
                return Err(format!("expected {kind} {m:?}, got {got:?}"));
            }
        }
        if let Some(g) = got.iter().find(|g| !want.is_empty() && !want.iter().any(|m| check_fail(m, g).is_ok())) {
            return Err(format!("unexpected {kind} {g:?}"));
        }
    }
    Ok(())
}

fn check_fail(m: &FailMatch, err: &str) -> Result<(), String> {
    match m {
        FailMatch::Any => Ok(()),
        FailMatch::Msg(want) if err == want => Ok(()),
        FailMatch::Regex(re) if regex::Regex::new(re).is_ok_and(|r| r.is_match(err)) => Ok(()),
        _ => Err(format!("expected error {m:?}, got {err:?}")),
    }
}

// ---- running ----------------------------------------------------------------

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// One eval (without the `@` variants), as its script says; annotations are checked
/// when `annotations` is set.
fn run_eval(
    engine: &Engine,
    store: &MemoryQueryable,
    e: &Eval,
    expr: &str,
    mode: &Mode,
    annotations: bool,
) -> Result<(), String> {
    let res = match mode {
        Mode::Instant(t) => block_on(engine.instant(store, expr, *t)),
        Mode::Range { start, end, step } => block_on(engine.range(store, expr, *start, *end, *step)),
    };
    let res = match (res, &e.fail) {
        (Err(err), Some(m)) => return check_fail(m, &err.to_string()),
        (Ok(v), Some(_)) => return Err(format!("expected error, got {:?}", v.value)),
        (Err(err), None) => return Err(format!("unexpected error: {err}")),
        (Ok(v), None) => v,
    };
    if annotations {
        check_annotations(e, &res)?;
    }
    let val = res.value;
    // Like upstream, results that depend on the query's own bounds are not compared
    // across query shapes.
    let range_check = matches!(val, Value::Scalar { .. } | Value::Vector(_)) && !calls_any(expr, QUERY_BOUND_FUNCTIONS);
    check_value(&e.expected, val, e.ordered)?;
    let Mode::Instant(t) = *mode else { return Ok(()) };
    if e.ordered || !range_check {
        return Ok(());
    }
    // Range mode: t-1m..t+1m by 1m, compared at t.
    let res = block_on(engine.range(store, expr, t - 60_000, t + 60_000, 60_000))
        .map_err(|err| format!("range mode: unexpected error: {err}"))?;
    let Value::Matrix(m) = res.value else { return Err("range mode: not a matrix".into()) };
    let at_t: Vec<(Labels, f64)> =
        m.into_iter().filter_map(|s| s.samples.iter().find(|p| p.t == t).map(|p| (s.labels.clone(), p.v))).collect();
    let res = match &e.expected {
        Expected::Scalar(w) => match at_t.first() {
            Some((_, v)) if almost_equal(*w, *v) => Ok(()),
            other => Err(format!("expected scalar {w}, got {other:?}")),
        },
        Expected::Vector(w) => compare_vector(w, &at_t, false),
        _ => Ok(()),
    };
    res.map_err(|err| format!("range mode: {err}"))
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
    "start",
    "end",
];

/// Duration-expression functions whose value is the query's start, end, range or step.
const QUERY_BOUND_FUNCTIONS: &[&str] = &["start", "end", "range", "step"];

/// Whether the expression calls any of `names`.
fn calls_any(expr: &str, names: &[&str]) -> bool {
    fn walk(e: &Expr, names: &[&str]) -> bool {
        match e {
            Expr::Subquery(sq) => walk(&sq.expr, names),
            Expr::Aggregate(a) => a.param.as_ref().is_some_and(|p| walk(p, names)) || walk(&a.expr, names),
            Expr::Unary(u) => walk(&u.expr, names),
            Expr::Binary(b) => walk(&b.lhs, names) || walk(&b.rhs, names),
            Expr::Paren(p) => walk(&p.expr, names),
            Expr::Call(c) => names.contains(&c.func.name) || c.args.args.iter().any(|a| walk(a, names)),
            _ => false,
        }
    }
    promql_parser::parser::parse(expr).is_ok_and(|e| walk(&e, names))
}

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

#[derive(Default)]
struct FileResult {
    passed: usize,
    total: usize,
    /// Passed evals with `expect warn`/`info`/`no_warn`/`no_info` lines (all checked).
    annotations_checked: usize,
    skipped: std::collections::BTreeMap<String, usize>,
    failures: Vec<(usize, String, String)>,
}

/// Whether a selector of `expr` selects one of `histograms` (series not loaded
/// because they hold native histograms).
fn selects_histogram(expr: &str, histograms: &[Labels]) -> bool {
    use promql_parser::label::MatchOp as P;
    use promql_parser::parser::VectorSelector;
    fn selects(vs: &VectorSelector, hs: &[Labels]) -> bool {
        let sets: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
            vec![&vs.matchers.matchers]
        } else {
            vs.matchers.or_matchers.iter().collect()
        };
        sets.iter().any(|set| {
            let mut ms: Vec<Matcher> = vs.name.iter().map(|n| Matcher::equal("__name__", n)).collect();
            for m in set.iter() {
                let op = match m.op {
                    P::Equal => pharos_model::MatchOp::Equal,
                    P::NotEqual => pharos_model::MatchOp::NotEqual,
                    P::Re(_) => pharos_model::MatchOp::Regex,
                    P::NotRe(_) => pharos_model::MatchOp::NotRegex,
                };
                let Ok(m) = Matcher::new(op, &m.name, &m.value) else { return false };
                ms.push(m);
            }
            hs.iter().any(|h| ms.iter().all(|m| m.matches_labels(h)))
        })
    }
    fn walk(e: &Expr, hs: &[Labels]) -> bool {
        match e {
            Expr::VectorSelector(vs) => selects(vs, hs),
            Expr::MatrixSelector(ms) => selects(&ms.vs, hs),
            Expr::Subquery(sq) => walk(&sq.expr, hs),
            Expr::Aggregate(a) => a.param.as_ref().is_some_and(|p| walk(p, hs)) || walk(&a.expr, hs),
            Expr::Unary(u) => walk(&u.expr, hs),
            Expr::Binary(b) => walk(&b.lhs, hs) || walk(&b.rhs, hs),
            Expr::Paren(p) => walk(&p.expr, hs),
            Expr::Call(c) => c.args.args.iter().any(|a| walk(a, hs)),
            _ => false,
        }
    }
    promql_parser::parser::parse(expr).is_ok_and(|e| walk(&e, histograms))
}

/// Why a failing eval is skipped rather than failed, if it is.
fn skip_reason(e: &Eval, histograms: &[Labels], experimental: Option<&str>) -> Option<String> {
    if e.histogram_result || selects_histogram(&e.expr, histograms) {
        return Some("native histograms".into());
    }
    if e.fail.is_none() && promql_parser::parser::parse(&e.expr).is_err() {
        return Some("promql-parser cannot parse it".into());
    }
    experimental.map(|x| format!("experimental: {x}"))
}

fn run_file(path: &Path, opts: &EngineOptions, experimental: Option<&str>) -> Result<FileResult, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let cmds = dsl::parse_script(&text)?;
    let engine = Engine::new(opts.clone());
    let mut store = MemoryQueryable::default();
    let mut histograms: Vec<Labels> = Vec::new();
    let mut res = FileResult::default();
    for c in cmds {
        match c {
            Cmd::Clear => {
                store = MemoryQueryable::default();
                histograms.clear();
            }
            Cmd::Load { series, histogram_series } => {
                store.extend(series);
                histograms.extend(histogram_series);
            }
            Cmd::Eval(e) => {
                res.total += 1;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_eval(&engine, &store, &e, &e.expr, &e.mode, true)?;
                    // Upstream's step-invariance variants: `@ t` on every selector,
                    // evaluated at other times, must give the same result.
                    if let Mode::Instant(t) = e.mode {
                        for (at_expr, et) in at_modifier_variants(&e.expr, t) {
                            run_eval(&engine, &store, &e, &at_expr, &Mode::Instant(et), true)
                                .map_err(|err| format!("@ variant {at_expr:?} at {et}ms: {err}"))?;
                        }
                    }
                    Ok::<(), String>(())
                }))
                .unwrap_or_else(|_| Err("panicked".into()));
                match outcome {
                    Ok(()) => {
                        res.passed += 1;
                        res.annotations_checked += usize::from(!e.annotations.is_empty() || e.no_warn || e.no_info);
                    }
                    Err(err) => match skip_reason(&e, &histograms, experimental) {
                        Some(reason) => {
                            if std::env::var_os("PROMQLTEST_VERBOSE").is_some() {
                                println!("skipped {}:{} ({reason}): {}\n    {err}", path.display(), e.line, e.expr);
                            }
                            *res.skipped.entry(reason).or_default() += 1;
                        }
                        None => res.failures.push((e.line, e.expr.clone(), err)),
                    },
                }
            }
        }
    }
    Ok(res)
}

/// Runs every script of `shared/promqltest/<sub>`; panics on unexpected failures.
fn run_suite(sub: &str, opts: EngineOptions) {
    let dir = shared_dir(sub);
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
    let (mut all_passed, mut all_skipped, mut all_failed, mut all_total) = (0, 0, 0, 0);
    // One print at the end, so the tables of suites run in parallel do not interleave.
    let mut table =
        format!("{:<32} {:>6} {:>7} {:>6} {:>6}  notes\n", format!("{sub}/"), "passed", "skipped", "failed", "total");
    for f in &files {
        let key = format!("{sub}/{}", f.file_name().unwrap().to_string_lossy());
        let experimental = EXPERIMENTAL_FILES.iter().find(|x| key.ends_with(x.0) && sub == "current");
        let r = match run_file(f, &opts, experimental.map(|x| x.1)) {
            Ok(r) => r,
            Err(e) => {
                unexpected.push(format!("{key}: cannot run: {e}"));
                continue;
            }
        };
        let skipped: usize = r.skipped.values().sum();
        let mut notes: Vec<String> = r.skipped.iter().map(|(why, n)| format!("{n} skipped ({why})")).collect();
        if r.annotations_checked > 0 {
            notes.push(format!("{} passed with warn/info expectations checked", r.annotations_checked));
        }
        println!("{key:<32} {:>6} {skipped:>7} {:>6} {:>6}  {}", r.passed, r.failures.len(), r.total, notes.join("; "));
        all_passed += r.passed;
        all_skipped += skipped;
        all_failed += r.failures.len();
        all_total += r.total;
        let known: &[usize] = KNOWN_FAILING.iter().find(|k| k.0 == key).map_or(&[], |k| k.1);
        let failed: Vec<usize> = r.failures.iter().map(|f| f.0).collect();
        for (line, expr, err) in &r.failures {
            if !known.contains(line) {
                unexpected.push(format!("{key}:{line}: {expr}\n    {err}"));
            }
        }
        now_passing.extend(known.iter().filter(|l| !failed.contains(l)).map(|l| format!("{key}:{l}")));
        if let Some((_, _, min)) = experimental
            && r.passed < *min
        {
            unexpected.push(format!("{key}: {} evals pass, fewer than the {min} measured before", r.passed));
        }
    }
    table += &format!("{:<32} {all_passed:>6} {all_skipped:>7} {all_failed:>6} {all_total:>6}", "TOTAL");
    println!("{table}");
    if !now_passing.is_empty() {
        println!("known failures that now pass (remove from KNOWN_FAILING): {now_passing:?}");
    }
    if !unexpected.is_empty() {
        panic!("{} unexpected failures:\n{}", unexpected.len(), unexpected.join("\n"));
    }
}

#[test]
fn prometheus_v2_42_test_scripts() {
    run_suite("v2.42", EngineOptions::default());
}

#[test]
fn prometheus_current_test_scripts() {
    run_suite("current", EngineOptions { compat: Compat::Prometheus3, ..EngineOptions::default() });
}

#[test]
fn dsl_parsing() {
    use dsl::{expand_token, parse_duration, parse_metric};
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
    let (l, _) = parse_metric(r#"{"my.metric", a="b"} 1"#).unwrap();
    assert_eq!(l.metric_name(), Some("my.metric"));
    let v = at_modifier_variants("sum(rate(x[1m])) + y", 10_000);
    assert_eq!(v.len(), 5);
    assert!(v[0].0.contains("x[1m] @ 10.000"), "{}", v[0].0);
    assert!(v[0].0.contains("y @ 10.000"), "{}", v[0].0);
    assert!(at_modifier_variants("time() + x", 10_000).is_empty());

    let cmds = dsl::parse_script(
        "load 1m\n  m{a=\"1\"} 1 2 {{count:1}}\n  n 0+1x2\n\n\
         eval range from 0 to 2m step 1m n\n  expect no_warn\n  n 0 1 2\n\n\
         eval instant at 1m m\n  expect fail msg: \"boom\"\n\n\
         eval range from 1m to 2m step 1m sort(n)\n  expect warn msg: w (1:1)\n",
    )
    .unwrap();
    let Cmd::Load { series, histogram_series } = &cmds[0] else { panic!() };
    assert_eq!((series.len(), histogram_series.len()), (1, 1));
    assert!(selects_histogram("sum(m)", histogram_series));
    assert!(selects_histogram(r#"count_over_time({__name__=~"m|n"}[1m])"#, histogram_series));
    assert!(!selects_histogram("n", histogram_series));
    let Cmd::Eval(e) = &cmds[1] else { panic!() };
    assert!(e.no_warn && !e.no_info && e.annotations.is_empty());
    assert!(matches!(e.mode, Mode::Range { start: 0, end: 120_000, step: 60_000 }));
    assert!(matches!(&e.expected, Expected::Matrix { series, .. } if series[0].1.len() == 3));
    let Cmd::Eval(e) = &cmds[2] else { panic!() };
    assert!(matches!(&e.fail, Some(FailMatch::Msg(m)) if m == "boom"));
    let Cmd::Eval(e) = &cmds[3] else { panic!() };
    assert_eq!(e.expr, "sort(n)");
    assert!(matches!(e.mode, Mode::Range { start: 60_000, end: 120_000, step: 60_000 }));
    assert!(matches!(&e.annotations[..], [a] if a.warning && matches!(&a.m, FailMatch::Msg(m) if m == "w (1:1)")));
}
