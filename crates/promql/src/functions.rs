//! PromQL functions with Prometheus 2.42 semantics: instant-vector and scalar
//! functions here, range-vector functions in [`crate::range_functions`].

use std::borrow::Cow;
use std::cmp::Ordering;

use pharos_model::{Labels, METRIC_NAME, MatchOp, civil_from_days};

use crate::annotations::Annotation;
use crate::ast::Node;
use crate::eval::Evaluator;
use crate::range_functions;
use crate::value::{Elem, Val, check_unique, go_max, go_min, valid_label_name};
use crate::{Error, histogram};

pub(crate) fn exec(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}

pub(crate) fn arg<'a>(args: &'a [Node], i: usize, name: &str) -> Result<&'a Node, Error> {
    args.get(i).ok_or_else(|| exec(format!("missing argument {} in call to {name}", i + 1)))
}

pub(crate) fn scalar_arg(ev: &Evaluator<'_>, args: &[Node], i: usize, name: &str, t: i64) -> Result<f64, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_scalar()
}

fn string_arg(ev: &Evaluator<'_>, args: &[Node], i: usize, name: &str, t: i64) -> Result<String, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_string()
}

fn vector_arg<'d>(ev: &Evaluator<'d>, args: &[Node], i: usize, name: &str, t: i64) -> Result<Vec<Elem<'d>>, Error> {
    ev.eval(arg(args, i, name)?, t)?.into_vector()
}

/// Applies `f` to every element, dropping the metric name.
fn map_values<'d>(ev: &Evaluator<'d>, v: Vec<Elem<'d>>, f: impl Fn(f64) -> f64) -> Result<Val<'d>, Error> {
    let out: Vec<Elem<'d>> = v.into_iter().map(|e| Elem { labels: ev.drop_name(e.labels), v: f(e.v) }).collect();
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

/// Node ids of a call and of its arguments (for annotations).
pub(crate) type Ids<'a> = (usize, &'a [usize]);

/// The node id of argument `i`.
pub(crate) fn arg_id(ids: Ids<'_>, i: usize) -> usize {
    ids.1.get(i).copied().unwrap_or(usize::MAX)
}

pub(crate) fn call<'d>(ev: &Evaluator<'d>, name: &str, args: &[Node], ids: Ids<'_>, t: i64) -> Result<Val<'d>, Error> {
    if let Some(f) = simple(name) {
        return map_values(ev, vector_arg(ev, args, 0, name, t)?, f);
    }
    if range_functions::RANGE_FUNCTIONS.contains(&name) {
        return range_functions::call(ev, name, args, ids, t);
    }
    if name.starts_with("sort") && ev.is_range_query() {
        ev.annotate(Annotation::sort_in_range_query(ids.0));
    }
    match name {
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        // Duration expressions (Prometheus 3, experimental): the query's own bounds.
        "start" | "end" | "range" | "step" => {
            let (start, end, step) = ev.query.get();
            let ms = match name {
                "start" => start,
                "end" => end,
                "range" => end - start,
                _ => step,
            };
            Ok(Val::Scalar(ms as f64 / 1000.0))
        }
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, args, 0, name, t)?;
            let b = scalar_arg(ev, args, 1, name, t)?;
            Ok(Val::Scalar(if name == "min_of" { go_min(a, b) } else { go_max(a, b) }))
        }
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
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(ev, args, 0, name, t)?;
            let mut names = Vec::with_capacity(args.len().saturating_sub(1));
            for i in 1..args.len() {
                names.push(string_arg(ev, args, i, name, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                let (a, b) = if desc { (b, a) } else { (a, b) };
                for n in &names {
                    let (x, y) = (a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    // Both directions are asked so the order stays total (Go's sort
                    // tolerates the natural order's ties, Rust's may not).
                    match (natural_less(x, y), natural_less(y, x)) {
                        _ if x == y => {}
                        (true, false) => return Ordering::Less,
                        (false, true) => return Ordering::Greater,
                        _ => return x.cmp(y),
                    }
                }
                a.labels.cmp(&b.labels)
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => label_replace(ev, args, t),
        "label_join" => label_join(ev, args, t),
        "histogram_quantile" => {
            let q = scalar_arg(ev, args, 0, name, t)?;
            let v = vector_arg(ev, args, 1, name, t)?;
            histogram::quantile(ev, q, v, [arg_id(ids, 0), arg_id(ids, 1)], t)
        }
        "histogram_quantiles" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let label = string_arg(ev, args, 1, name, t)?;
            let mut qs = Vec::with_capacity(args.len().saturating_sub(2));
            for i in 2..args.len() {
                qs.push(scalar_arg(ev, args, i, name, t)?);
            }
            histogram::quantiles(ev, v, &label, &qs, (arg_id(ids, 0), ids.1.get(2..).unwrap_or(&[])), t)
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, args, 0, name, t)?;
            let upper = scalar_arg(ev, args, 1, name, t)?;
            let v = vector_arg(ev, args, 2, name, t)?;
            histogram::fraction(ev, lower, upper, v, arg_id(ids, 2))
        }
        "clamp" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let min = scalar_arg(ev, args, 1, name, t)?;
            let max = scalar_arg(ev, args, 2, name, t)?;
            if max < min {
                return Ok(Val::Vector(Vec::new()));
            }
            map_values(ev, v, |x| go_max(min, go_min(max, x)))
        }
        "clamp_max" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let max = scalar_arg(ev, args, 1, name, t)?;
            map_values(ev, v, |x| go_min(max, x))
        }
        "clamp_min" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let min = scalar_arg(ev, args, 1, name, t)?;
            map_values(ev, v, |x| go_max(min, x))
        }
        "round" => {
            let v = vector_arg(ev, args, 0, name, t)?;
            let to_nearest = if args.len() > 1 { scalar_arg(ev, args, 1, name, t)? } else { 1.0 };
            let inv = 1.0 / to_nearest;
            map_values(ev, v, |x| (x * inv + 0.5).floor() / inv)
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" => {
            let f = date_fn(name);
            if args.is_empty() {
                let v = f(t.div_euclid(1000));
                return Ok(Val::Vector(vec![Elem { labels: Cow::Owned(Labels::default()), v }]));
            }
            // Go's int64(float) conversion; NaN and out-of-range values saturate.
            map_values(ev, vector_arg(ev, args, 0, name, t)?, |x| f(x as i64))
        }
        // Native histograms are not stored; these see only floats and return nothing.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
            Ok(Val::Vector(Vec::new()))
        }
        other => Err(exec(format!("function {other:?} is not supported"))),
    }
}

/// Natural order of label values (`facette.io/natsort`, as Prometheus uses for
/// `sort_by_label`): runs of digits compare as numbers, other runs as strings.
fn natural_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else { return false };
        let last_a = i == ca.len() - 1;
        let last_b = i == cb.len() - 1;
        let equal = match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(p), Ok(q)) if p != q => return p < q,
            (Ok(_), Ok(_)) => true,
            _ if x == y => true,
            _ => return x < y,
        };
        if equal {
            if last_a {
                return true;
            } else if last_b {
                return false;
            }
        }
    }
    false
}

fn timestamp<'d>(ev: &Evaluator<'d>, node: &Node, t: i64) -> Result<Val<'d>, Error> {
    // For a plain selector the sample's own timestamp; otherwise the evaluation time.
    let out: Vec<Elem<'d>> = match node {
        Node::Vector(sel) => ev
            .vector_selector(sel, t)
            .map(|(l, s)| Elem { labels: ev.drop_name(Cow::Borrowed(l)), v: s.t as f64 / 1000.0 })
            .collect(),
        _ => ev
            .eval(node, t)?
            .into_vector()?
            .into_iter()
            .map(|e| Elem { labels: ev.drop_name(e.labels), v: t as f64 / 1000.0 })
            .collect(),
    };
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// The labels `absent`/`absent_over_time` report: the selector's equality
/// matchers, except labels matched more than once or by other operators.
pub(crate) fn absent_labels(node: &Node) -> Labels {
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
    let re = ev
        .regex(&re_str)
        .map_err(|e| e.unwrap_or_else(|| exec(format!("invalid regular expression in label_replace(): {re_str}"))))?;
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

// ---- date functions -------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn natural_order() {
        assert!(natural_less("a2", "a10"));
        assert!(!natural_less("a10", "a2"));
        assert!(natural_less("abc", "abd"));
        assert!(natural_less("1", "01a"));
    }
}
