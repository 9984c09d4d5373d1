//! PromQL functions with Prometheus 2.42 semantics.

use std::borrow::Cow;
use std::collections::HashMap;

use pharos_model::{Labels, METRIC_NAME, MatchOp, Sample};

use crate::Error;
use crate::aggregate::quantile;
use crate::ast::Node;
use crate::eval::Evaluator;
use crate::value::{Elem, Val, check_unique, drop_name, go_max, go_min, kahan_inc, valid_label_name};

fn exec(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}

fn arg<'a>(args: &'a [Node], i: usize, name: &str) -> Result<&'a Node, Error> {
    args.get(i).ok_or_else(|| exec(format!("missing argument {} in call to {name}", i + 1)))
}

fn scalar_arg(ev: &Evaluator<'_>, args: &[Node], i: usize, name: &str, t: i64) -> Result<f64, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_scalar()
}

fn string_arg(ev: &Evaluator<'_>, args: &[Node], i: usize, name: &str, t: i64) -> Result<String, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_string()
}

fn vector_arg<'d>(ev: &Evaluator<'d>, args: &[Node], i: usize, name: &str, t: i64) -> Result<Vec<Elem<'d>>, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_vector()
}

/// Applies `f` to every element, dropping the metric name.
fn map_values<'d>(v: Vec<Elem<'d>>, f: impl Fn(f64) -> f64) -> Result<Val<'d>, Error> {
    let out: Vec<Elem<'d>> = v.into_iter().map(|e| Elem { labels: drop_name(e.labels), v: f(e.v) }).collect();
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

fn simple(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "changes",
    "resets",
    "deriv",
    "predict_linear",
    "holt_winters",
    "double_exponential_smoothing",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "absent_over_time",
    "mad_over_time",
];

pub(crate) fn call<'d>(ev: &Evaluator<'d>, name: &str, args: &[Node], t: i64) -> Result<Val<'d>, Error> {
    if let Some(f) = simple(name) {
        return map_values(vector_arg(ev, args, 0, name, t)?, f);
    }
    if RANGE_FUNCTIONS.contains(&name) {
        return range_function(ev, name, args, t);
    }
    match name {
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = scalar_arg(ev, args, 0, name, t)?;
            Ok(Val::Vector(vec![Elem { labels: Cow::Owned(Labels::default()), v }]))
        }
        "scalar" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "timestamp" => timestamp(ev, arg(args, 0, name)?, t),
        "absent" => {
            let node = arg(args, 0, name)?;
            if ev.eval(node, t)?.into_vector()?.is_empty() {
                Ok(Val::Vector(vec![Elem { labels: Cow::Owned(absent_labels(node)), v: 1.0 }]))
            } else {
                Ok(Val::Vector(Vec::new()))
            }
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, args, 0, name, t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal),
                _ => a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal),
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => label_replace(ev, args, t),
        "label_join" => label_join(ev, args, t),
        "histogram_quantile" => {
            let q = scalar_arg(ev, args, 0, name, t)?;
            let v = vector_arg(ev, args, 1, name, t)?;
            histogram_quantile(q, v)
        }
        "clamp" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let min = scalar_arg(ev, args, 1, name, t)?;
            let max = scalar_arg(ev, args, 2, name, t)?;
            if max < min {
                return Ok(Val::Vector(Vec::new()));
            }
            map_values(v, |x| go_max(min, go_min(max, x)))
        }
        "clamp_max" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let max = scalar_arg(ev, args, 1, name, t)?;
            map_values(v, |x| go_min(max, x))
        }
        "clamp_min" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let min = scalar_arg(ev, args, 1, name, t)?;
            map_values(v, |x| go_max(min, x))
        }
        "round" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let to_nearest = if args.len() > 1 { scalar_arg(ev, args, 1, name, t)? } else { 1.0 };
            let inv = 1.0 / to_nearest;
            map_values(v, |x| (x * inv + 0.5).floor() / inv)
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" => {
            let f = date_fn(name);
            if args.is_empty() {
                let v = f(t.div_euclid(1000));
                return Ok(Val::Vector(vec![Elem { labels: Cow::Owned(Labels::default()), v }]));
            }
            // Go's int64(float) conversion; NaN and out-of-range values saturate.
            map_values(vector_arg(ev, args, 0, name, t)?, |x| f(x as i64))
        }
        // Native histograms are not stored; these see only floats and return nothing.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_fraction" | "histogram_stddev"
        | "histogram_stdvar" => Ok(Val::Vector(Vec::new())),
        other => Err(exec(format!("function {other:?} is not supported"))),
    }
}

fn timestamp<'d>(ev: &Evaluator<'d>, node: &Node, t: i64) -> Result<Val<'d>, Error> {
    // For a plain selector the sample's own timestamp; otherwise the evaluation time.
    let out: Vec<Elem<'d>> = match node {
        Node::Vector(sel) => ev
            .vector_selector(sel, t)
            .map(|(l, s)| Elem { labels: drop_name(Cow::Borrowed(l)), v: s.t as f64 / 1000.0 })
            .collect(),
        _ => ev
            .eval(node, t)?
            .into_vector()?
            .into_iter()
            .map(|e| Elem { labels: drop_name(e.labels), v: t as f64 / 1000.0 })
            .collect(),
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// The labels `absent`/`absent_over_time` report: the selector's equality
/// matchers, except labels matched more than once or by other operators.
fn absent_labels(node: &Node) -> Labels {
    let sel = match node {
        Node::Vector(s) | Node::Matrix { sel: s, .. } => s,
        _ => return Labels::default(),
    };
    let [set] = sel.matcher_sets.as_slice() else { return Labels::default() };
    let mut l = Labels::default();
    let mut empty = Vec::new();
    for m in set {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && l.get(&m.name).is_none() {
            l.set(&m.name, &m.value);
        } else {
            empty.push(m.name.as_str());
        }
    }
    l.without(&empty)
}

fn label_replace<'d>(ev: &Evaluator<'d>, args: &[Node], t: i64) -> Result<Val<'d>, Error> {
    let name = "label_replace";
    let v = vector_arg(ev, args, 0, name, t)?;
    let dst = string_arg(ev, args, 1, name, t)?;
    let repl = string_arg(ev, args, 2, name, t)?;
    let src = string_arg(ev, args, 3, name, t)?;
    let re_str = string_arg(ev, args, 4, name, t)?;
    let re = ev.regex(&re_str).map_err(|_| exec(format!("invalid regular expression in label_replace(): {re_str}")))?;
    if !valid_label_name(&dst) {
        return Err(exec(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let src_val = e.labels.get(&src).unwrap_or("");
        let labels = match re.captures(src_val) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut l = e.labels.into_owned();
                l.set(&dst, &res);
                Cow::Owned(l)
            }
            None => e.labels,
        };
        out.push(Elem { labels, v: e.v });
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

fn label_join<'d>(ev: &Evaluator<'d>, args: &[Node], t: i64) -> Result<Val<'d>, Error> {
    let name = "label_join";
    let v = vector_arg(ev, args, 0, name, t)?;
    let dst = string_arg(ev, args, 1, name, t)?;
    let sep = string_arg(ev, args, 2, name, t)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let s = string_arg(ev, args, i, name, t)?;
        if !valid_label_name(&s) {
            return Err(exec(format!("invalid source label name in label_join(): {s}")));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(exec(format!("invalid destination label name in label_join(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
        let joined = joined.join(&sep);
        let mut l = e.labels.into_owned();
        l.set(&dst, &joined);
        out.push(Elem { labels: Cow::Owned(l), v: e.v });
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

fn histogram_quantile<'d>(q: f64, v: Vec<Elem<'d>>) -> Result<Val<'d>, Error> {
    // Grouped by labels without `le` but with the name, so histograms of different
    // names never merge (they collide in the output instead).
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for e in v {
        let Some(le) = e.labels.get("le") else { continue };
        let Ok(upper) = parse_go_float(le) else { continue };
        let key = e.labels.without(&["le"]);
        let gi = match index.get(&key) {
            Some(&i) => i,
            None => {
                let out_labels = key.without(&[METRIC_NAME]);
                index.insert(key, groups.len());
                groups.push((out_labels, Vec::new()));
                groups.len() - 1
            }
        };
        groups[gi].1.push((upper, e.v));
    }
    let out: Vec<Elem<'d>> = groups
        .into_iter()
        .map(|(labels, mut buckets)| Elem { labels: Cow::Owned(labels), v: bucket_quantile(q, &mut buckets) })
        .collect();
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

fn parse_go_float(s: &str) -> Result<f64, std::num::ParseFloatError> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" if !s.starts_with('-') => Ok(f64::INFINITY),
        _ => s.parse::<f64>(),
    }
}

/// Prometheus's classic-histogram quantile over `(upper bound, cumulative count)`.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

// ---- date functions -------------------------------------------------------

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date_fn(name: &str) -> fn(i64) -> f64 {
    match name {
        "year" => |s| civil_from_days(s.div_euclid(86_400)).0 as f64,
        "month" => |s| civil_from_days(s.div_euclid(86_400)).1 as f64,
        "day_of_month" => |s| civil_from_days(s.div_euclid(86_400)).2 as f64,
        "day_of_week" => |s| (s.div_euclid(86_400) + 4).rem_euclid(7) as f64,
        "day_of_year" => |s| {
            let (y, m, d) = civil_from_days(s.div_euclid(86_400));
            let before: i64 = (1..m).map(|mm| days_in_month(y, mm)).sum();
            (before + d) as f64
        },
        "days_in_month" => |s| {
            let (y, m, _) = civil_from_days(s.div_euclid(86_400));
            days_in_month(y, m) as f64
        },
        "hour" => |s| (s.rem_euclid(86_400) / 3600) as f64,
        _ => |s| (s.rem_euclid(3600) / 60) as f64,
    }
}

// ---- range-vector functions -----------------------------------------------

fn range_function<'d>(ev: &Evaluator<'d>, name: &str, args: &[Node], t: i64) -> Result<Val<'d>, Error> {
    let mat_idx = usize::from(name == "quantile_over_time");
    let node = arg(args, mat_idx, name)?;
    let (end, range) = match node {
        Node::Matrix { sel, range } => (sel.ref_time(t), *range),
        Node::Subquery { range, offset, at, .. } => (at.unwrap_or(t).saturating_sub(*offset), *range),
        _ => return Err(exec(format!("expected range vector argument in call to {name}"))),
    };
    let start = end.saturating_sub(range);
    let m = ev.eval(node, t)?.into_matrix()?;

    if name == "absent_over_time" {
        return Ok(Val::Vector(if m.is_empty() {
            vec![Elem { labels: Cow::Owned(absent_labels(node)), v: 1.0 }]
        } else {
            Vec::new()
        }));
    }
    let (p1, p2) = match name {
        "quantile_over_time" => (scalar_arg(ev, args, 0, name, t)?, 0.0),
        "predict_linear" => (scalar_arg(ev, args, 1, name, t)?, 0.0),
        "holt_winters" | "double_exponential_smoothing" => {
            (scalar_arg(ev, args, 1, name, t)?, scalar_arg(ev, args, 2, name, t)?)
        }
        _ => (0.0, 0.0),
    };
    let keep_name = name == "last_over_time" || name == "first_over_time";
    let mut out = Vec::with_capacity(m.len());
    for r in m {
        let s: &[Sample] = &r.samples;
        if s.is_empty() {
            continue;
        }
        let v = match name {
            "rate" => extrapolated_rate(s, start, end, range, true, true),
            "increase" => extrapolated_rate(s, start, end, range, true, false),
            "delta" => extrapolated_rate(s, start, end, range, false, false),
            "irate" => instant_value(s, true),
            "idelta" => instant_value(s, false),
            "changes" => {
                Some(s.windows(2).filter(|w| w[0].v != w[1].v && !(w[0].v.is_nan() && w[1].v.is_nan())).count() as f64)
            }
            "resets" => Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64),
            "deriv" => (s.len() >= 2).then(|| linear_regression(s, s[0].t).0),
            "predict_linear" => (s.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(s, t);
                slope * p1 + intercept
            }),
            "holt_winters" | "double_exponential_smoothing" => holt_winters(s, p1, p2)?,
            "avg_over_time" => Some(avg_over_time(s)),
            "min_over_time" => Some(s.iter().fold(s[0].v, |acc, x| if x.v < acc || acc.is_nan() { x.v } else { acc })),
            "max_over_time" => Some(s.iter().fold(s[0].v, |acc, x| if x.v > acc || acc.is_nan() { x.v } else { acc })),
            "sum_over_time" => Some(s.iter().map(|x| x.v).sum()),
            "count_over_time" => Some(s.len() as f64),
            "quantile_over_time" => {
                let mut vals: Vec<f64> = s.iter().map(|x| x.v).collect();
                Some(quantile(p1, &mut vals))
            }
            "stddev_over_time" => Some(variance_over_time(s).sqrt()),
            "stdvar_over_time" => Some(variance_over_time(s)),
            "last_over_time" => Some(s[s.len() - 1].v),
            "first_over_time" => Some(s[0].v),
            "present_over_time" => Some(1.0),
            "mad_over_time" => {
                let mut vals: Vec<f64> = s.iter().map(|x| x.v).collect();
                let median = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|x| (x - median).abs()).collect();
                Some(quantile(0.5, &mut dev))
            }
            other => return Err(exec(format!("function {other:?} is not supported"))),
        };
        if let Some(v) = v {
            let labels = if keep_name { r.labels } else { drop_name(r.labels) };
            out.push(Elem { labels, v });
        }
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// rate/increase/delta over the window `[start, end]`, extrapolated to its edges.
fn extrapolated_rate(s: &[Sample], start: i64, end: i64, range: i64, is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = 0.0;
        for x in s {
            if x.v < prev {
                result += prev;
            }
            prev = x.v;
        }
    }
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_between = sampled / (s.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg_between / 2.0 };
    interval += if to_end < threshold { to_end } else { avg_between / 2.0 };
    result *= interval / sampled;
    if is_rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// irate/idelta: from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s[s.len() - 1];
    let prev = s[s.len() - 2];
    let mut v = if is_rate && last.v < prev.v { last.v } else { last.v - prev.v };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares fit of value over time (seconds relative to `intercept_time`).
fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let init_y = s[0].v;
    let const_y = s.iter().all(|x| x.v == init_y);
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for p in s {
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1000.0;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(p.v, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * p.v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn holt_winters(s: &[Sample], sf: f64, tf: f64) -> Result<Option<f64>, Error> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(exec(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(exec(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")));
    }
    if s.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

fn avg_over_time(s: &[Sample]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0, 0.0);
    for p in s {
        count += 1.0;
        if mean.is_infinite() {
            if p.v.is_infinite() && (mean > 0.0) == (p.v > 0.0) {
                continue;
            }
            if !p.v.is_infinite() && !p.v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(p.v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn variance_over_time(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // 0..=60s every 10s, +10 per sample, window [0, 60s]: exact 1/s.
        let s = samples(&(0..=6).map(|i| (i * 10_000, i as f64 * 10.0)).collect::<Vec<_>>());
        let r = extrapolated_rate(&s, 0, 60_000, 60_000, true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-9);
        // a counter reset adds the pre-reset value.
        let s = samples(&[(0, 10.0), (10_000, 20.0), (20_000, 5.0)]);
        let inc = extrapolated_rate(&s, 0, 20_000, 20_000, true, false).unwrap();
        assert!((inc - 15.0).abs() < 1e-9, "{inc}");
        assert!(extrapolated_rate(&s[..1], 0, 1, 1, true, true).is_none());
    }

    #[test]
    fn irate_and_idelta() {
        let s = samples(&[(0, 1.0), (10_000, 5.0), (20_000, 2.0)]);
        assert_eq!(instant_value(&s, true), Some(0.2));
        assert_eq!(instant_value(&s, false), Some(-3.0));
    }

    #[test]
    fn regression_slope() {
        let s = samples(&[(0, 0.0), (1_000, 2.0), (2_000, 4.0)]);
        let (slope, intercept) = linear_regression(&s, 0);
        assert!((slope - 2.0).abs() < 1e-9);
        assert!(intercept.abs() < 1e-9);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(date_fn("day_of_week")(0), 4.0);
        assert_eq!(date_fn("days_in_month")(19_782 * 86_400), 29.0);
        assert_eq!(date_fn("day_of_year")(19_782 * 86_400), 60.0);
        assert_eq!(date_fn("hour")(3_600 * 5 + 59), 5.0);
        assert_eq!(date_fn("minute")(3_600 * 5 + 59 * 60), 59.0);
    }

    #[test]
    fn histogram_quantile_interpolates() {
        let mut b = vec![(0.1, 10.0), (0.2, 20.0), (f64::INFINITY, 20.0)];
        assert!((bucket_quantile(0.5, &mut b) - 0.1).abs() < 1e-9);
        let mut b = vec![(0.1, 10.0)];
        assert!(bucket_quantile(0.5, &mut b).is_nan());
    }
}
