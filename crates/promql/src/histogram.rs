//! Classic histograms: series of cumulative bucket counts labelled `le`.
//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` with
//! Prometheus 3's bucket maths (`promql/quantile.go`: `BucketQuantile`,
//! `BucketFraction`) and annotations. Native histograms are not stored by Pharos.

use std::borrow::Cow;
use std::collections::HashMap;

use pharos_model::{Labels, METRIC_NAME};

use crate::Error;
use crate::annotations::{Annotation, Monotonicity};
use crate::eval::Evaluator;
use crate::value::{Elem, Val, check_unique};

/// Differences between neighbouring bucket counts this small (relative) are float noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// `(upper bound, cumulative count)`.
pub(crate) type Bucket = (f64, f64);

/// One classic histogram found in a vector: its output labels (the series' labels
/// without `le` and the metric name) and buckets.
struct Histogram {
    labels: Labels,
    buckets: Vec<Bucket>,
}

/// Groups the elements of `v` into classic histograms by their labels without `le`
/// (first-seen order); an element whose `le` is missing or no number is left out
/// with Prometheus's warning, pointing at node `arg`.
fn histograms(ev: &Evaluator<'_>, v: Vec<Elem<'_>>, arg: usize) -> Vec<Histogram> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Histogram> = Vec::new();
    for e in v {
        let le = e.labels.get("le").unwrap_or("");
        let Ok(upper) = parse_go_float(le) else {
            ev.annotate(Annotation::bad_bucket_label(e.labels.get(METRIC_NAME).unwrap_or(""), le, arg));
            continue;
        };
        let key = e.labels.without(&["le"]);
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                let labels = key.without(&[METRIC_NAME]);
                index.insert(key, out.len());
                out.push(Histogram { labels, buckets: Vec::new() });
                out.len() - 1
            }
        };
        out[i].buckets.push((upper, e.v));
    }
    out
}

/// Go's `strconv.ParseFloat` for `le` values (`+Inf`, `inf`, `1e0`, `.2`).
fn parse_go_float(s: &str) -> Result<f64, std::num::ParseFloatError> {
    let unsigned = s.trim_start_matches(['+', '-']);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Ok(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    s.parse::<f64>()
}

/// Prometheus's quantile argument check: a warning unless `0 <= q <= 1`.
pub(crate) fn check_quantile(ev: &Evaluator<'_>, q: f64, node: usize) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.annotate(Annotation::invalid_quantile(q, node));
    }
}

/// `histogram_quantile(q, v)`; `ids`: the nodes of `q` and `v`.
pub(crate) fn quantile<'d>(
    ev: &Evaluator<'d>,
    q: f64,
    v: Vec<Elem<'d>>,
    ids: [usize; 2],
    t: i64,
) -> Result<Val<'d>, Error> {
    check_quantile(ev, q, ids[0]);
    let mut out = Vec::new();
    for h in histograms(ev, v, ids[1]) {
        out.push(Elem { labels: Cow::Owned(h.labels), v: quantile_of(ev, q, h.buckets, ids[1], t) });
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// `histogram_quantiles(v, "label", q...)`: every quantile of every histogram, the
/// quantile in `label` (OpenMetrics float form); `ids`: the nodes of `v` and each `q`.
pub(crate) fn quantiles<'d>(
    ev: &Evaluator<'d>,
    v: Vec<Elem<'d>>,
    label: &str,
    qs: &[f64],
    ids: (usize, &[usize]),
    t: i64,
) -> Result<Val<'d>, Error> {
    for (i, &q) in qs.iter().enumerate() {
        check_quantile(ev, q, ids.1.get(i).copied().unwrap_or(usize::MAX));
    }
    let hs = histograms(ev, v, ids.0);
    let mut out = Vec::with_capacity(hs.len() * qs.len());
    for &q in qs {
        let q_str = open_metrics_float(q);
        for h in &hs {
            let mut labels = h.labels.clone();
            labels.set(label, &q_str);
            out.push(Elem { labels: Cow::Owned(labels), v: quantile_of(ev, q, h.buckets.clone(), ids.0, t) });
        }
    }
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// `histogram_fraction(lower, upper, v)`; `arg`: the node of `v`.
pub(crate) fn fraction<'d>(
    ev: &Evaluator<'d>,
    lower: f64,
    upper: f64,
    v: Vec<Elem<'d>>,
    arg: usize,
) -> Result<Val<'d>, Error> {
    let out: Vec<Elem<'d>> = histograms(ev, v, arg)
        .into_iter()
        .map(|mut h| Elem { labels: Cow::Owned(h.labels), v: bucket_fraction(lower, upper, &mut h.buckets) })
        .collect();
    check_unique(&out)?;
    Ok(Val::Vector(out))
}

/// [`bucket_quantile`], reporting forced monotonicity at node `arg`.
fn quantile_of(ev: &Evaluator<'_>, q: f64, mut buckets: Vec<Bucket>, arg: usize, t: i64) -> f64 {
    let (v, fix) = bucket_quantile(q, &mut buckets);
    if let Some((min_bucket, max_bucket, max_diff)) = fix {
        let m = Monotonicity { min_ts: t, max_ts: t, min_bucket, max_bucket, max_diff, extra: 0 };
        ev.annotate(Annotation::forced_monotonicity(arg, m));
    }
    v
}

/// Go's `labels.FormatOpenMetricsFloat`: `1.0`, `0.25`, `NaN`, `+Inf`.
fn open_metrics_float(v: f64) -> String {
    let s = crate::annotations::go_g(v);
    if v.is_finite() && !s.contains(['.', 'e']) { format!("{s}.0") } else { s }
}

/// Sorts by upper bound, merges equal bounds; `None` without a `+Inf` bucket.
fn prepare(buckets: &mut Vec<Bucket>) -> Option<()> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return None;
    }
    buckets.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
    Some(())
}

/// Prometheus's classic-histogram quantile (`BucketQuantile`); also the bucket
/// range and largest decrease when counts had to be made monotonic.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, Option<(f64, f64, f64)>) {
    if q.is_nan() {
        return (f64::NAN, None);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    if prepare(buckets).is_none() {
        return (f64::NAN, None);
    }
    let fix = ensure_monotonic(buckets);
    let n = buckets.len();
    let observations = buckets[n - 1].1;
    if n < 2 || observations == 0.0 {
        return (f64::NAN, fix);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.1 < rank);
    if b == n - 1 {
        return (buckets[n - 2].0, fix);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, fix);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (start + (end - start) * (rank / count), fix)
}

/// Prometheus's `ensureMonotonicAndIgnoreSmallDeltas`: absorbs float noise, then
/// lifts every decrease to the last accepted count; `(min bucket, max bucket, max
/// decrease)` of the lifted buckets, if any.
fn ensure_monotonic(buckets: &mut [Bucket]) -> Option<(f64, f64, f64)> {
    let mut fix: Option<(f64, f64, f64)> = None;
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            let f = fix.get_or_insert((f64::INFINITY, f64::NEG_INFINITY, 0.0));
            f.0 = f.0.min(b.0);
            f.1 = f.1.max(b.0);
            f.2 = f.2.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    fix
}

/// Prometheus's `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if (a.is_nan() && b.is_nan()) || a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus's `BucketFraction`: the share of observations between `lower` and
/// `upper`, interpolating linearly inside buckets; the lowest bucket starts at 0 when
/// its upper bound is positive and at -Inf otherwise, and the infinite buckets
/// contribute nothing partial.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if buckets.is_empty() || prepare(buckets).is_none() {
        return f64::NAN;
    }
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, None, None);
    let mut lower_bound = if buckets[0].0 <= 0.0 { f64::NEG_INFINITY } else { 0.0 };
    for (i, &(upper_bound, cum)) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].0;
        }
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                cum
            } else {
                rank + (cum - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if lower_rank.is_none() && lower_bound >= lower {
            lower_rank = Some(rank);
        }
        if upper_rank.is_none() && lower_bound >= upper {
            upper_rank = Some(rank);
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        if lower_rank.is_none() && lower_bound < lower && upper_bound > lower {
            lower_rank = Some(interpolate(lower));
        }
        if upper_rank.is_none() && lower_bound < upper && upper_bound > upper {
            upper_rank = Some(interpolate(upper));
        }
        if lower_rank.is_some() && upper_rank.is_some() {
            break;
        }
        rank = cum;
    }
    let clamp = |r: Option<f64>| match r {
        Some(r) if r <= count || r.is_nan() => r,
        _ => count,
    };
    (clamp(upper_rank) - clamp(lower_rank)) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[(f64, f64)]) -> Vec<Bucket> {
        v.to_vec()
    }

    #[test]
    fn quantile_interpolates_and_reports_monotonicity() {
        let (q, fix) = bucket_quantile(0.5, &mut b(&[(0.1, 10.0), (0.2, 20.0), (f64::INFINITY, 20.0)]));
        assert!((q - 0.1).abs() < 1e-9);
        assert!(fix.is_none());
        assert!(bucket_quantile(0.5, &mut b(&[(0.1, 10.0)])).0.is_nan());
        let (_, fix) = bucket_quantile(0.5, &mut b(&[(1.0, 10.0), (2.0, 7.0), (3.0, 12.0), (f64::INFINITY, 12.0)]));
        assert_eq!(fix, Some((2.0, 2.0, 3.0)));
        assert_eq!(bucket_quantile(f64::NAN, &mut vec![]).0.to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn fraction_follows_prometheus_3() {
        let h = [(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)];
        let f = |lo: f64, hi: f64| bucket_fraction(lo, hi, &mut b(&h));
        assert!((f(0.0, 1.5) - 0.02).abs() < 1e-12);
        assert!((f(0.5, 2.0) - 0.025).abs() < 1e-12);
        assert!((f(400.0, f64::INFINITY) - 0.94).abs() < 1e-12);
        assert_eq!(f(3.0, 2.0), 0.0);
        assert!(f(f64::NAN, 1.0).is_nan());
        let neg = [(-3.0, 10.0), (-2.0, 12.0), (-1.0, 15.0), (f64::INFINITY, 100.0)];
        assert!((bucket_fraction(f64::NEG_INFINITY, -1.5, &mut b(&neg)) - 0.135).abs() < 1e-12);
        assert!((bucket_fraction(-4.0, -2.0, &mut b(&neg)) - 0.02).abs() < 1e-12);
        assert!(bucket_fraction(0.0, 1.0, &mut vec![]).is_nan());
    }

    #[test]
    fn quantile_labels_are_open_metrics_floats() {
        assert_eq!(open_metrics_float(0.0), "0.0");
        assert_eq!(open_metrics_float(1.0), "1.0");
        assert_eq!(open_metrics_float(0.25), "0.25");
        assert_eq!(open_metrics_float(-0.1), "-0.1");
        assert_eq!(open_metrics_float(f64::NAN), "NaN");
        assert_eq!(parse_go_float("+Inf"), Ok(f64::INFINITY));
        assert!(parse_go_float("Hello World").is_err());
    }
}
