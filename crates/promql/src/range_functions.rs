//! Range-vector functions (`rate`, `*_over_time`, `deriv`, ...) with Prometheus
//! 2.42 semantics: each sees the samples of one series inside the window.

use std::borrow::Cow;

use pharos_model::{METRIC_NAME, Sample};

use crate::Error;
use crate::aggregate::quantile;
use crate::annotations::Annotation;
use crate::ast::Node;
use crate::eval::Evaluator;
use crate::functions::{Ids, absent_labels, arg, arg_id, exec, scalar_arg};
use crate::histogram::check_quantile;
use crate::value::{Elem, RangeElem, Val, check_unique, kahan_inc};

pub(crate) const RANGE_FUNCTIONS: &[&str] = &[
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
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
];

pub(crate) fn call<'d>(ev: &Evaluator<'d>, name: &str, args: &[Node], ids: Ids<'_>, t: i64) -> Result<Val<'d>, Error> {
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
    if matches!(name, "rate" | "increase") && matches!(node, Node::Matrix { .. }) {
        check_counter_names(ev, &m, arg_id(ids, 0));
    }
    let (p1, p2) = match name {
        "quantile_over_time" => {
            let q = scalar_arg(ev, args, 0, name, t)?;
            check_quantile(ev, q, arg_id(ids, 0));
            (q, 0.0)
        }
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
            "rate" => extrapolated_rate(s, start, end, range, true, true, ev.v3),
            "increase" => extrapolated_rate(s, start, end, range, true, false, ev.v3),
            "delta" => extrapolated_rate(s, start, end, range, false, false, ev.v3),
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
            "avg_over_time" if ev.v3 => Some(avg_over_time_v3(s)),
            "avg_over_time" => Some(avg_over_time(s)),
            "min_over_time" => Some(s.iter().fold(s[0].v, |acc, x| if x.v < acc || acc.is_nan() { x.v } else { acc })),
            "max_over_time" => Some(s.iter().fold(s[0].v, |acc, x| if x.v > acc || acc.is_nan() { x.v } else { acc })),
            "sum_over_time" if ev.v3 => Some(kahan_sum(s)),
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
            // The timestamp of the last maximum/minimum (ties go to the later sample).
            "ts_of_max_over_time" => Some(ts_of_extreme(s, |cur, best| cur >= best) as f64 / 1000.0),
            "ts_of_min_over_time" => Some(ts_of_extreme(s, |cur, best| cur <= best) as f64 / 1000.0),
            "ts_of_first_over_time" => Some(s[0].t as f64 / 1000.0),
            "ts_of_last_over_time" => Some(s[s.len() - 1].t as f64 / 1000.0),
            "mad_over_time" if s.iter().any(|x| x.v.is_nan()) => Some(f64::NAN),
            "mad_over_time" => {
                let mut vals: Vec<f64> = s.iter().map(|x| x.v).collect();
                let median = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|x| (x - median).abs()).collect();
                Some(quantile(0.5, &mut dev))
            }
            other => return Err(exec(format!("function {other:?} is not supported"))),
        };
        if let Some(v) = v {
            let labels = if keep_name { r.labels } else { ev.drop_name(r.labels) };
            out.push(Elem { labels, v });
        }
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// Prometheus's info for `rate`/`increase` over series whose metric name does not
/// end like a counter's.
fn check_counter_names(ev: &Evaluator<'_>, m: &[RangeElem<'_>], node: usize) {
    const COUNTER_SUFFIXES: [&str; 4] = ["_total", "_sum", "_count", "_bucket"];
    let mut last = None;
    for r in m {
        let name = r.labels.get(METRIC_NAME).unwrap_or("");
        // Series of one metric come together: annotate each name once per step.
        if last == Some(name) {
            continue;
        }
        last = Some(name);
        if !name.is_empty() && !r.samples.is_empty() && !COUNTER_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            ev.annotate(Annotation::possible_non_counter(name, node));
        }
    }
}

/// rate/increase/delta over the window `[start, end]`, extrapolated to its edges.
/// Prometheus 3 limits the extrapolation to half a sample interval before it
/// limits it to the counter's zero point; 2.42 did the opposite.
fn extrapolated_rate(
    s: &[Sample],
    start: i64,
    end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    v3: bool,
) -> Option<f64> {
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
    let threshold = avg_between * 1.1;
    if v3 {
        if to_start >= threshold {
            to_start = avg_between / 2.0;
        }
        if is_counter && result > 0.0 && first.v >= 0.0 {
            to_start = to_start.min(sampled * (first.v / result));
        }
        let to_end = if to_end >= threshold { avg_between / 2.0 } else { to_end };
        result *= (sampled + to_start + to_end) / sampled;
        if is_rate {
            result /= range as f64 / 1000.0;
        }
        return Some(result);
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg_between / 2.0 };
    interval += if to_end < threshold { to_end } else { avg_between / 2.0 };
    result *= interval / sampled;
    if is_rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// The time of the sample `better` prefers (NaN loses to anything), as Prometheus's
/// `compareOverTime` finds it.
fn ts_of_extreme(s: &[Sample], better: impl Fn(f64, f64) -> bool) -> i64 {
    let (mut best, mut ts) = (s[0].v, s[0].t);
    for p in s {
        if better(p.v, best) || best.is_nan() {
            best = p.v;
            ts = p.t;
        }
    }
    ts
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

/// Prometheus 3's `sum_over_time`: Kahan summation.
fn kahan_sum(s: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in s {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// Prometheus 3's `avg_over_time`: a Kahan sum divided by the count, switching to an
/// incremental mean only when the sum would overflow.
fn avg_over_time_v3(s: &[Sample]) -> f64 {
    let (mut sum, mut count, mut mean, mut c) = (s[0].v, 1.0f64, 0.0f64, 0.0f64);
    let mut incremental = false;
    for (i, p) in s.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental { mean + c } else { sum / count + c / count }
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
        let r = extrapolated_rate(&s, 0, 60_000, 60_000, true, true, false).unwrap();
        assert!((r - 1.0).abs() < 1e-9);
        // a counter reset adds the pre-reset value.
        let s = samples(&[(0, 10.0), (10_000, 20.0), (20_000, 5.0)]);
        let inc = extrapolated_rate(&s, 0, 20_000, 20_000, true, false, false).unwrap();
        assert!((inc - 15.0).abs() < 1e-9, "{inc}");
        assert!(extrapolated_rate(&s[..1], 0, 1, 1, true, true, false).is_none());
    }

    #[test]
    fn ts_of_extremes_prefer_the_later_tie() {
        let s = samples(&[(0, 1.0), (1_000, 3.0), (2_000, 3.0), (3_000, 1.0)]);
        assert_eq!(ts_of_extreme(&s, |c, b| c >= b), 2_000);
        assert_eq!(ts_of_extreme(&s, |c, b| c <= b), 3_000);
        let s = samples(&[(0, f64::NAN), (1_000, 2.0)]);
        assert_eq!(ts_of_extreme(&s, |c, b| c >= b), 1_000);
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
}
