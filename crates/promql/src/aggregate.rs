//! Aggregation operators with `by`/`without`, following Prometheus 2.42's
//! arithmetic (incremental mean, Welford variance, heap-based topk/bottomk).

use std::borrow::Cow;
use std::collections::HashMap;

use pharos_model::{Labels, METRIC_NAME};

use crate::Error;
use crate::ast::{AggOp, Grouping};
use crate::value::{Elem, Val, format_float, kahan_inc, keep_labels, valid_label_name};

/// The output labels of the group `l` belongs to.
pub(crate) fn group_labels(l: &Labels, g: &Grouping) -> Labels {
    match g {
        Grouping::By(names) => keep_labels(l, names),
        Grouping::Without(names) => {
            let mut drop: Vec<&str> = names.iter().map(String::as_str).collect();
            drop.push(METRIC_NAME);
            l.without(&drop)
        }
    }
}

struct Group<'d> {
    labels: Labels,
    value: f64,
    mean: f64,
    count: f64,
    /// Kahan compensation of `value` (sum, avg) or `mean` (avg after overflow).
    comp: f64,
    /// avg switched from sum/count to an incremental mean (the sum overflowed).
    incremental: bool,
    /// topk/bottomk heap, quantile values, limitk members.
    elems: Vec<Elem<'d>>,
}

pub(crate) fn eval<'d>(
    op: AggOp,
    param: Option<Val<'d>>,
    v: Vec<Elem<'d>>,
    grouping: &Grouping,
    v3: bool,
) -> Result<Val<'d>, Error> {
    let mut k: usize = 0;
    let mut q = 0.0;
    let mut ratio = 0.0;
    let mut grouping = Cow::Borrowed(grouping);
    let mut value_label = String::new();
    match op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk => {
            let f = param.map(Val::into_scalar).transpose()?.unwrap_or(f64::NAN);
            if v3 && f.is_nan() {
                return Err(Error::Execution("Parameter value is NaN".into()));
            }
            if !(f >= i64::MIN as f64 && f <= i64::MAX as f64) {
                return Err(Error::Execution(format!("Scalar value {} overflows int64", format_float(f))));
            }
            let k64 = f as i64;
            if k64 < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
            k = usize::try_from(k64).unwrap_or(usize::MAX);
        }
        AggOp::Quantile => q = param.map(Val::into_scalar).transpose()?.unwrap_or(f64::NAN),
        AggOp::CountValues => {
            value_label = param.map(Val::into_string).transpose()?.unwrap_or_default();
            if !valid_label_name(&value_label) {
                return Err(Error::Execution(format!("invalid label name {value_label:?}")));
            }
            if let Grouping::By(names) = grouping.as_ref() {
                let mut names = names.clone();
                names.push(value_label.clone());
                grouping = Cow::Owned(Grouping::By(names));
            }
        }
        AggOp::LimitRatio => {
            ratio = param.map(Val::into_scalar).transpose()?.unwrap_or(f64::NAN);
            if ratio.is_nan() {
                return Err(Error::Execution("Ratio value is NaN".into()));
            }
            if ratio == 0.0 {
                return Ok(Val::Vector(Vec::new()));
            }
            ratio = ratio.clamp(-1.0, 1.0);
        }
        _ => {}
    }

    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Group<'d>> = Vec::new();
    for mut e in v {
        if op == AggOp::CountValues {
            let mut l = e.labels.into_owned();
            l.set(&value_label, &format_float(e.v));
            e.labels = Cow::Owned(l);
        }
        let key = group_labels(&e.labels, &grouping);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                index.insert(key.clone(), groups.len());
                let value = match op {
                    // Prometheus 3: a NaN or infinite first value makes the variance NaN.
                    AggOp::Stddev | AggOp::Stdvar if v3 && !e.v.is_finite() => f64::NAN,
                    AggOp::Stddev | AggOp::Stdvar => 0.0,
                    _ => e.v,
                };
                let mut g =
                    Group { labels: key, value, mean: e.v, count: 1.0, comp: 0.0, incremental: !v3, elems: Vec::new() };
                if matches!(op, AggOp::Topk | AggOp::Bottomk | AggOp::Quantile | AggOp::Limitk)
                    || (op == AggOp::LimitRatio && in_ratio(ratio, &e.labels))
                {
                    g.elems.push(e);
                }
                groups.push(g);
                continue;
            }
        };
        let g = &mut groups[gi];
        let s = e.v;
        match op {
            // Prometheus 3 sums with Kahan compensation.
            AggOp::Sum if v3 => (g.value, g.comp) = kahan_inc(s, g.value, g.comp),
            AggOp::Sum => g.value += s,
            AggOp::Avg if v3 => {
                g.count += 1.0;
                if !g.incremental {
                    let (sum, c) = kahan_inc(s, g.value, g.comp);
                    if !sum.is_infinite() {
                        (g.value, g.comp) = (sum, c);
                        continue;
                    }
                    // The sum would overflow: continue with an incremental mean.
                    g.incremental = true;
                    g.mean = g.value / (g.count - 1.0);
                    g.comp /= g.count - 1.0;
                }
                if g.mean.is_infinite() {
                    if s.is_infinite() && (g.mean > 0.0) == (s > 0.0) {
                        continue;
                    }
                    if !s.is_infinite() && !s.is_nan() {
                        continue;
                    }
                }
                let current = g.mean + g.comp;
                (g.mean, g.comp) = kahan_inc(s / g.count - current / g.count, g.mean, g.comp);
            }
            AggOp::Avg => {
                g.count += 1.0;
                if g.mean.is_infinite() {
                    if s.is_infinite() && (g.mean > 0.0) == (s > 0.0) {
                        continue;
                    }
                    if !s.is_infinite() && !s.is_nan() {
                        continue;
                    }
                }
                g.mean += s / g.count - g.mean / g.count;
            }
            AggOp::Group => {}
            AggOp::Count | AggOp::CountValues => g.count += 1.0,
            AggOp::Max => {
                if g.value < s || g.value.is_nan() {
                    g.value = s;
                }
            }
            AggOp::Min => {
                if g.value > s || g.value.is_nan() {
                    g.value = s;
                }
            }
            AggOp::Stddev | AggOp::Stdvar => {
                g.count += 1.0;
                let delta = s - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (s - g.mean);
            }
            AggOp::Topk | AggOp::Bottomk => {
                let top = op == AggOp::Topk;
                let h = &mut g.elems;
                let replace = h.len() < k || {
                    let min = h[0].v;
                    min.is_nan() || if top { min < s } else { min > s }
                };
                if replace {
                    if h.len() == k {
                        if k == 1 {
                            h[0] = e;
                            continue;
                        }
                        heap_pop(h, top);
                    }
                    heap_push(h, e, top);
                }
            }
            AggOp::Quantile => g.elems.push(e),
            AggOp::Limitk => {
                if g.elems.len() < k {
                    g.elems.push(e);
                }
            }
            AggOp::LimitRatio => {
                if in_ratio(ratio, &e.labels) {
                    g.elems.push(e);
                }
            }
        }
    }

    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let v = match op {
            AggOp::Sum if v3 => g.value + g.comp,
            AggOp::Sum | AggOp::Min | AggOp::Max => g.value,
            AggOp::Avg if !g.incremental => (g.value + g.comp) / g.count,
            AggOp::Avg if v3 => g.mean + g.comp,
            AggOp::Avg => g.mean,
            AggOp::Count | AggOp::CountValues => g.count,
            AggOp::Group => 1.0,
            AggOp::Stdvar => g.value / g.count,
            AggOp::Stddev => (g.value / g.count).sqrt(),
            AggOp::Quantile => {
                let mut vals: Vec<f64> = g.elems.iter().map(|e| e.v).collect();
                quantile(q, &mut vals)
            }
            AggOp::Topk | AggOp::Bottomk => {
                let top = op == AggOp::Topk;
                // sort.Sort(sort.Reverse(heap)): an insertion sort for small inputs.
                insertion_sort_desc(&mut g.elems, top);
                out.append(&mut g.elems);
                continue;
            }
            AggOp::Limitk | AggOp::LimitRatio => {
                out.append(&mut g.elems);
                continue;
            }
        };
        out.push(Elem { labels: Cow::Owned(g.labels), v });
    }
    Ok(Val::Vector(out))
}

/// Prometheus's `AddRatioSample`: a series is kept when its hash, as a fraction of
/// the hash space, falls below `ratio` (or, for a negative ratio, at or above
/// `1 + ratio`), so `limit_ratio(r, x)` and `limit_ratio(r - 1, x)` are complements.
fn in_ratio(ratio: f64, labels: &Labels) -> bool {
    let offset = pharos_model::series_hash("", labels) as f64 / u64::MAX as f64;
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

/// The heap order: NaN sorts first; topk keeps a min-heap, bottomk a max-heap.
fn heap_less(a: f64, b: f64, top: bool) -> bool {
    if a.is_nan() {
        return true;
    }
    if top { a < b } else { a > b }
}

fn heap_push<'d>(h: &mut Vec<Elem<'d>>, e: Elem<'d>, top: bool) {
    h.push(e);
    let mut j = h.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if !heap_less(h[j].v, h[i].v, top) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_pop(h: &mut Vec<Elem<'_>>, top: bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && heap_less(h[j1 + 1].v, h[j1].v, top) {
            j = j1 + 1;
        }
        if !heap_less(h[j].v, h[i].v, top) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    h.pop();
}

/// Go's insertion sort with the reversed heap order (what `sort.Sort` does for
/// up to 12 elements); larger inputs fall back to a stable sort.
fn insertion_sort_desc(v: &mut [Elem<'_>], top: bool) {
    if v.len() > 12 {
        // NaN last, then by value (descending for topk, ascending for bottomk).
        v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ if top => b.v.total_cmp(&a.v),
            _ => a.v.total_cmp(&b.v),
        });
        return;
    }
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && heap_less(v[j - 1].v, v[j].v, top) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_of(vals: &[(&str, f64)]) -> Vec<Elem<'static>> {
        vals.iter()
            .map(|(g, v)| Elem {
                labels: Cow::Owned(Labels::from_pairs(&[("__name__", "m"), ("g", g), ("i", &v.to_string())])),
                v: *v,
            })
            .collect()
    }

    fn run(op: AggOp, p: Option<Val<'static>>, g: Grouping, vals: &[(&str, f64)]) -> Vec<(String, f64)> {
        match eval(op, p, vec_of(vals), &g, false).unwrap() {
            Val::Vector(v) => v.into_iter().map(|e| (e.labels.to_string(), e.v)).collect(),
            _ => panic!(),
        }
    }

    #[test]
    fn sum_by_and_without() {
        let d = [("a", 1.0), ("a", 2.0), ("b", 4.0)];
        assert_eq!(
            run(AggOp::Sum, None, Grouping::By(vec!["g".into()]), &d),
            vec![(r#"{g="a"}"#.to_string(), 3.0), (r#"{g="b"}"#.to_string(), 4.0)]
        );
        assert_eq!(run(AggOp::Sum, None, Grouping::Without(vec!["i".into()]), &d).len(), 2);
        assert_eq!(run(AggOp::Count, None, Grouping::By(vec![]), &d), vec![("{}".to_string(), 3.0)]);
    }

    #[test]
    fn avg_stddev_min_max() {
        let d = [("a", 2.0), ("a", 4.0), ("a", 4.0), ("a", 4.0), ("a", 5.0), ("a", 5.0), ("a", 7.0), ("a", 9.0)];
        let g = || Grouping::By(vec![]);
        assert_eq!(run(AggOp::Avg, None, g(), &d)[0].1, 5.0);
        assert_eq!(run(AggOp::Stddev, None, g(), &d)[0].1, 2.0);
        assert_eq!(run(AggOp::Stdvar, None, g(), &d)[0].1, 4.0);
        assert_eq!(run(AggOp::Min, None, g(), &d)[0].1, 2.0);
        assert_eq!(run(AggOp::Max, None, g(), &d)[0].1, 9.0);
    }

    #[test]
    fn topk_keeps_labels_and_orders() {
        let d = [("a", 1.0), ("a", 5.0), ("a", 3.0), ("a", f64::NAN)];
        let out = run(AggOp::Topk, Some(Val::Scalar(2.0)), Grouping::By(vec![]), &d);
        assert_eq!(out.iter().map(|x| x.1).collect::<Vec<_>>(), vec![5.0, 3.0]);
        assert!(out[0].0.starts_with("m{"));
        let out = run(AggOp::Bottomk, Some(Val::Scalar(2.0)), Grouping::By(vec![]), &d);
        assert_eq!(out.iter().map(|x| x.1).collect::<Vec<_>>(), vec![1.0, 3.0]);
        assert!(run(AggOp::Topk, Some(Val::Scalar(0.0)), Grouping::By(vec![]), &d).is_empty());
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn limit_ratio_complements() {
        let d: Vec<(&str, f64)> = (0..50).map(|i| ("a", f64::from(i))).collect();
        let g = || Grouping::By(vec![]);
        let keep = |r: f64| run(AggOp::LimitRatio, Some(Val::Scalar(r)), g(), &d);
        let (a, b) = (keep(0.3), keep(-0.7));
        assert_eq!(a.len() + b.len(), 50);
        assert!(a.iter().all(|x| !b.contains(x)));
        assert_eq!(keep(1.0).len(), 50);
        assert_eq!(keep(-1.5).len(), 50);
        assert!(keep(0.0).is_empty());
        assert_eq!(run(AggOp::Limitk, Some(Val::Scalar(3.0)), g(), &d).len(), 3);
    }

    #[test]
    fn count_values_adds_label() {
        let d = [("a", 1.0), ("b", 1.0), ("b", 2.0)];
        let out = run(AggOp::CountValues, Some(Val::Str("v".into())), Grouping::By(vec![]), &d);
        assert_eq!(out, vec![(r#"{v="1"}"#.to_string(), 2.0), (r#"{v="2"}"#.to_string(), 1.0)]);
    }
}
