//! Aggregation pushdown: which aggregations a sharded storage can evaluate shard by
//! shard, what each shard is asked, and how the shards' partial answers combine.
//!
//! **Assumption**: every series lives wholly on one shard. Pharos routes a series to
//! its shard by a hash of its full label set (with replication a shard is one raft
//! group, so this still holds); it stops holding only while series move after the
//! shard count changed, and a storage in that state must not offer pushdown.
//!
//! Under that assumption an aggregation over a *series-local* expression (every output
//! series depends on exactly one input series: selectors with offset/`@`, range
//! functions, instant math functions, unary minus, arithmetic and comparisons with a
//! constant scalar) can run on every shard, and only partial aggregates cross the
//! network:
//!
//! | op | each shard returns | combined by |
//! |---|---|---|
//! | `sum`, `count`, `count_values` | the same aggregation | summing per label set |
//! | `min`, `max` | the same aggregation | min/max with Prometheus's NaN rule |
//! | `group` | `group` | one per label set |
//! | `avg` | `avg` and `count` | a count-weighted incremental mean |
//! | `topk`/`bottomk` (literal k) | `topk`/`bottomk` of k+1 | top-k of the union |
//!
//! The answers equal non-pushed evaluation up to floating-point rounding of sums and
//! means (they add in another order). Two cases are never pushed, so they stay exact:
//! inners that rewrite labels (drop the metric name, `label_replace`) unless every
//! selector names one metric, since series merging into one label set across shards
//! would hide Prometheus's duplicate-label-set error; and `topk`/`bottomk` whose union
//! holds equal values at or above the k-th, where Prometheus's choice among ties depends
//! on every input series ([`combine`] then returns `None` and the engine evaluates the
//! node as usual).
//!
//! This module is pure: the engine asks the storage (see
//! [`crate::Queryable::eval_partials`]) and hands the answers to [`combine`].

use std::borrow::Cow;
use std::collections::HashMap;

use pharos_model::{Labels, METRIC_NAME, MatchOp, Sample, Series};

use crate::aggregate;
use crate::ast::{AggOp, Grouping, Node};
use crate::range_functions::RANGE_FUNCTIONS;
use crate::value::{Elem, Val, kahan_inc};

/// One expression a shard evaluates over its own series, as a range query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushdownRequest {
    pub expr: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Positive; an instant query is asked as `start = end` with step 1.
    pub step_ms: i64,
    pub lookback_ms: i64,
    /// Evaluate with [`crate::Compat::Prometheus3`] semantics.
    pub prometheus3: bool,
}

/// A pushable aggregation node: what to ask every shard.
#[derive(Debug, Clone)]
pub(crate) struct Pushed<'a> {
    pub node: &'a Node,
    /// The node's id (its annotations' node ids on the shards count from it).
    pub id: usize,
    pub op: AggOp,
    pub grouping: &'a Grouping,
    /// `k` of topk/bottomk.
    pub k: usize,
    /// The expressions each shard evaluates: one, or `avg` then `count` for avg.
    pub exprs: Vec<String>,
}

/// The maximal pushable aggregation nodes of `root`, outside subqueries.
pub(crate) fn find(root: &Node) -> Vec<Pushed<'_>> {
    let mut out = Vec::new();
    visit(root, &mut out);
    out
}

fn visit<'a>(n: &'a Node, out: &mut Vec<Pushed<'a>>) {
    if let Some(p) = pushable(n) {
        out.push(p);
        return;
    }
    match n {
        Node::Number(_) | Node::Str(_) | Node::Vector(_) | Node::Matrix { .. } | Node::Subquery { .. } => {}
        Node::Neg(e) => visit(e, out),
        Node::Binary { lhs, rhs, .. } => {
            visit(lhs, out);
            visit(rhs, out);
        }
        Node::Aggregate { param, expr, .. } => {
            if let Some(p) = param {
                visit(p, out);
            }
            visit(expr, out);
        }
        Node::Call { args, .. } => args.iter().for_each(|a| visit(a, out)),
    }
}

fn pushable(n: &Node) -> Option<Pushed<'_>> {
    let Node::Aggregate { op, param, expr, grouping, inner, id, param_id } = n else { return None };
    // A shard numbers the nodes of the expression it is sent from the aggregation's
    // own id on; a parenthesised parameter (printed without its parentheses) would
    // shift them.
    if param.is_some() && *param_id != id + 1 {
        return None;
    }
    let mut rewrites = false;
    if !series_local(expr, &mut rewrites) || (rewrites && !names_one_metric(expr)) {
        return None;
    }
    let modifier = match grouping {
        Grouping::By(l) => format!(" by ({})", l.join(", ")),
        Grouping::Without(l) => format!(" without ({})", l.join(", ")),
    };
    let agg = |name: &str, param: Option<String>| match param {
        Some(p) => format!("{name}{modifier} ({p}, {inner})"),
        None => format!("{name}{modifier} ({inner})"),
    };
    let mut k = 0;
    let exprs = match op {
        AggOp::Sum => vec![agg("sum", None)],
        AggOp::Count => vec![agg("count", None)],
        AggOp::Min => vec![agg("min", None)],
        AggOp::Max => vec![agg("max", None)],
        AggOp::Group => vec![agg("group", None)],
        AggOp::Avg => vec![agg("avg", None), agg("count", None)],
        AggOp::CountValues => {
            let Some(Node::Str(label)) = param.as_deref() else { return None };
            vec![agg("count_values", Some(format!("{label:?}")))]
        }
        AggOp::Topk | AggOp::Bottomk => {
            // Literal k only; k < 1 (empty) and NaN (an error in 3.x) stay with the engine.
            let Some(Node::Number(f)) = param.as_deref() else { return None };
            if !(*f >= 1.0 && *f < 1e15) {
                return None;
            }
            k = *f as usize;
            let name = if *op == AggOp::Topk { "topk" } else { "bottomk" };
            vec![agg(name, Some((k + 1).to_string()))]
        }
        _ => return None,
    };
    Some(Pushed { node: n, id: *id, op: *op, grouping, k, exprs })
}

/// Instant functions whose every output series comes from one input series (range
/// functions are all such, except `absent_over_time`).
const LOCAL_INSTANT_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "clamp",
    "clamp_min",
    "clamp_max",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "sin",
    "sinh",
    "tan",
    "tanh",
    "deg",
    "rad",
    "timestamp",
    "year",
    "month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
];

fn local_function(f: &str) -> bool {
    (RANGE_FUNCTIONS.contains(&f) && f != "absent_over_time") || LOCAL_INSTANT_FUNCTIONS.contains(&f)
}

/// Whether every output series of `n` depends on exactly one input series; sets
/// `rewrites` when labels may change on the way (the metric name dropped).
fn series_local(n: &Node, rewrites: &mut bool) -> bool {
    match n {
        Node::Vector(_) | Node::Matrix { .. } => true,
        Node::Subquery { expr, .. } => series_local(expr, rewrites),
        Node::Neg(e) => {
            *rewrites = true;
            series_local(e, rewrites)
        }
        Node::Binary { lhs, rhs, .. } => {
            *rewrites = true;
            (constant(lhs) && series_local(rhs, rewrites)) || (constant(rhs) && series_local(lhs, rewrites))
        }
        Node::Call { func, args, .. } => {
            *rewrites = true;
            // The date functions without an argument read `vector(time())`.
            if func == "quantile_over_time" {
                return args.len() == 2 && constant(&args[0]) && series_local(&args[1], rewrites);
            }
            local_function(func)
                && !args.is_empty()
                && series_local(&args[0], rewrites)
                && args[1..].iter().all(constant)
        }
        Node::Number(_) | Node::Str(_) | Node::Aggregate { .. } => false,
    }
}

/// A scalar or string that is the same on every shard.
fn constant(n: &Node) -> bool {
    match n {
        Node::Number(_) | Node::Str(_) => true,
        Node::Neg(e) => constant(e),
        Node::Binary { lhs, rhs, .. } => constant(lhs) && constant(rhs),
        _ => false,
    }
}

/// Every selector under `n` selects by one `__name__="..."`, so dropping the name
/// cannot merge two series into one label set.
fn names_one_metric(n: &Node) -> bool {
    match n {
        Node::Vector(sel) | Node::Matrix { sel, .. } => {
            sel.matcher_sets.len() == 1
                && sel.matcher_sets[0].iter().any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
        }
        Node::Subquery { expr, .. } | Node::Neg(expr) => names_one_metric(expr),
        Node::Binary { lhs, rhs, .. } => names_one_metric(lhs) && names_one_metric(rhs),
        Node::Call { args, .. } => args.iter().all(names_one_metric),
        Node::Number(_) | Node::Str(_) => true,
        Node::Aggregate { .. } => false,
    }
}

/// Combines the shards' answers to `p.exprs` (`partials[expr][shard]`) into the
/// node's result as a matrix sorted by labels; `None` when the combination would not be
/// exact (ties in topk/bottomk) and the node must be evaluated as usual.
pub(crate) fn combine(p: &Pushed<'_>, partials: Vec<Vec<Vec<Series>>>, v3: bool) -> Option<Vec<Series>> {
    let mut sets = partials.into_iter();
    let first = sets.next()?;
    Some(match p.op {
        AggOp::Sum => fold(first, |a, b| a + b, v3),
        AggOp::Count | AggOp::CountValues => fold(first, |a, b| a + b, false),
        AggOp::Group => fold(first, |_, _| 1.0, false),
        AggOp::Max => fold(first, |a, b| if a < b || a.is_nan() { b } else { a }, false),
        AggOp::Min => fold(first, |a, b| if a > b || a.is_nan() { b } else { a }, false),
        AggOp::Avg => weighted_mean(first, sets.next()?),
        AggOp::Topk | AggOp::Bottomk => top(p, first, v3)?,
        _ => return None,
    })
}

/// Points per label set and time over all shards, in shard order.
fn by_labels_and_time(shards: Vec<Vec<Series>>) -> HashMap<Labels, Vec<Vec<Sample>>> {
    let mut m: HashMap<Labels, Vec<Vec<Sample>>> = HashMap::new();
    for series in shards {
        for s in series {
            m.entry(s.labels).or_default().push(s.samples);
        }
    }
    m
}

/// Folds every label set's points at equal times with `f` (Kahan-compensated sums
/// when `kahan`); points of one series are in time order.
fn fold(shards: Vec<Vec<Series>>, f: impl Fn(f64, f64) -> f64, kahan: bool) -> Vec<Series> {
    let mut out: Vec<Series> = by_labels_and_time(shards)
        .into_iter()
        .map(|(labels, parts)| {
            let mut acc: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
            for part in parts {
                for x in part {
                    acc.entry(x.t)
                        .and_modify(|(v, c)| if kahan { (*v, *c) = kahan_inc(x.v, *v, *c) } else { *v = f(*v, x.v) })
                        .or_insert((x.v, 0.0));
                }
            }
            Series::new(
                labels,
                acc.into_iter().map(|(t, (v, c))| Sample::new(t, if kahan { v + c } else { v })).collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// avg from per-shard (avg, count): an incremental mean weighted by count, with
/// Prometheus's handling of infinite means, so large values do not overflow a sum.
fn weighted_mean(avgs: Vec<Vec<Series>>, counts: Vec<Vec<Series>>) -> Vec<Series> {
    let counts = by_labels_and_time(counts);
    let mut out = Vec::new();
    for (labels, parts) in by_labels_and_time(avgs) {
        let Some(cparts) = counts.get(&labels) else { continue };
        let mut acc: std::collections::BTreeMap<i64, (f64, f64)> = std::collections::BTreeMap::new();
        for (part, cpart) in parts.iter().zip(cparts) {
            for x in part {
                let Ok(ci) = cpart.binary_search_by_key(&x.t, |c| c.t) else { continue };
                let c = cpart[ci].v;
                let (mean, n) = acc.entry(x.t).or_insert((0.0, 0.0));
                *n += c;
                if *n == c {
                    *mean = x.v;
                    continue;
                }
                if mean.is_infinite() {
                    if x.v.is_infinite() && (*mean > 0.0) == (x.v > 0.0) {
                        continue;
                    }
                    if !x.v.is_infinite() && !x.v.is_nan() {
                        continue;
                    }
                }
                let w = c / *n;
                *mean += x.v * w - *mean * w;
            }
        }
        out.push(Series::new(labels, acc.into_iter().map(|(t, (m, _))| Sample::new(t, m)).collect()));
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// topk/bottomk of the union of the shards' top k+1 at every time; `None` when equal
/// values at or above a group's k-th make the choice depend on the full input.
fn top(p: &Pushed<'_>, shards: Vec<Vec<Series>>, v3: bool) -> Option<Vec<Series>> {
    let mut at: std::collections::BTreeMap<i64, Vec<(Labels, f64)>> = std::collections::BTreeMap::new();
    for s in shards.into_iter().flatten() {
        for x in &s.samples {
            at.entry(x.t).or_default().push((s.labels.clone(), x.v));
        }
    }
    let is_top = p.op == AggOp::Topk;
    let mut out: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for (t, mut cands) in at {
        cands.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: HashMap<Labels, Vec<f64>> = HashMap::new();
        for (l, v) in &cands {
            groups.entry(aggregate::group_labels(l, p.grouping)).or_default().push(*v);
        }
        for vals in groups.values_mut() {
            // Best first; NaN is worst for both.
            vals.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if is_top => b.total_cmp(a),
                _ => a.total_cmp(b),
            });
            let selected = p.k.min(vals.len());
            let tie = |i: usize| vals[i] == vals[i + 1] || (vals[i].is_nan() && vals[i + 1].is_nan());
            if (0..selected).any(|i| i + 1 < vals.len() && tie(i)) {
                return None;
            }
        }
        let elems = cands.iter().map(|(l, v)| Elem { labels: Cow::Borrowed(l), v: *v }).collect();
        let Ok(Val::Vector(v)) = aggregate::eval(p.op, Some(Val::Scalar(p.k as f64)), elems, p.grouping, v3) else {
            return None;
        };
        for e in v {
            out.entry(e.labels.into_owned()).or_default().push(Sample::new(t, e.v));
        }
    }
    let mut out: Vec<Series> = out.into_iter().map(|(l, s)| Series::new(l, s)).collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{lower, parse};

    fn node(q: &str) -> Node {
        lower(&parse(q).unwrap(), 0, 0).unwrap()
    }

    fn pushed_exprs(q: &str) -> Vec<Vec<String>> {
        find(&node(q)).into_iter().map(|p| p.exprs).collect()
    }

    #[test]
    fn finds_maximal_pushable_aggregations() {
        assert_eq!(pushed_exprs("sum by (job) (rate(x[5m]))"), vec![vec!["sum by (job) (rate(x[5m]))"]]);
        assert_eq!(
            pushed_exprs("avg without (i) (x offset 1m)"),
            vec![vec!["avg without (i) (x offset 1m)", "count without (i) (x offset 1m)"]]
        );
        assert_eq!(pushed_exprs("topk(3, -x)"), vec![vec!["topk by () (4, -x)"]]);
        assert_eq!(pushed_exprs(r#"count_values("v", x)"#), vec![vec![r#"count_values by () ("v", x)"#]]);
        // The outer sum is over an aggregation: only the inner one is pushed.
        assert_eq!(pushed_exprs("sum(max by (a) (x > 2))"), vec![vec!["max by (a) (x > 2)"]]);
        assert_eq!(pushed_exprs("sum(x) / count(y)").len(), 2);
    }

    #[test]
    fn leaves_what_does_not_combine() {
        for q in [
            "stddev(x)",
            "quantile(0.5, x)",
            "sum(x + y)",
            "sum(vector(1))",
            "sum(histogram_quantile(0.9, x))",
            "topk(scalar(y), x)",
            "topk(0, x)",
            "max_over_time(sum(x)[5m:1m])",
            r#"sum(rate({__name__=~"a|b"}[5m]))"#,
            r#"sum(label_replace(x, "a", "b", "c", "d"))"#,
            "sum(absent(x))",
            "sum(hour())",
        ] {
            assert!(pushed_exprs(q).is_empty(), "{q}");
        }
        // Selecting by one metric name makes name-dropping safe; plain selection needs no name.
        assert_eq!(pushed_exprs(r#"sum({job="a"})"#).len(), 1);
        assert_eq!(pushed_exprs("sum(rate(x[5m:1m]))").len(), 1);
    }

    fn series(l: &[(&str, &str)], pts: &[(i64, f64)]) -> Series {
        Series::new(Labels::from_pairs(l), pts.iter().map(|&(t, v)| Sample::new(t, v)).collect())
    }

    type Points = Vec<(String, Vec<(i64, f64)>)>;

    fn combined(q: &str, shards: Vec<Vec<Vec<Series>>>) -> Option<Points> {
        let n = node(q);
        let p = find(&n).pop().unwrap();
        let out = combine(&p, shards, false)?;
        Some(out.iter().map(|s| (s.labels.to_string(), s.samples.iter().map(|x| (x.t, x.v)).collect())).collect())
    }

    #[test]
    fn sums_counts_and_extremes_combine_per_label_set_and_time() {
        let a = vec![series(&[("j", "a")], &[(0, 1.0), (10, 2.0)]), series(&[("j", "b")], &[(10, 5.0)])];
        let b = vec![series(&[("j", "a")], &[(10, 3.0), (20, 4.0)])];
        let want = vec![
            (r#"{j="a"}"#.to_string(), vec![(0, 1.0), (10, 5.0), (20, 4.0)]),
            (r#"{j="b"}"#.to_string(), vec![(10, 5.0)]),
        ];
        assert_eq!(combined("sum by (j) (x)", vec![vec![a.clone(), b.clone()]]).unwrap(), want);
        let max = combined("max by (j) (x)", vec![vec![a.clone(), b.clone()]]).unwrap();
        assert_eq!(max[0].1, vec![(0, 1.0), (10, 3.0), (20, 4.0)]);
        let min = combined("min by (j) (x)", vec![vec![a.clone(), b.clone()]]).unwrap();
        assert_eq!(min[0].1, vec![(0, 1.0), (10, 2.0), (20, 4.0)]);
        let ones = |s: Vec<Series>| -> Vec<Series> {
            s.into_iter()
                .map(|s| Series::new(s.labels, s.samples.iter().map(|x| Sample::new(x.t, 1.0)).collect()))
                .collect()
        };
        let g = combined("group by (j) (x)", vec![vec![ones(a), ones(b)]]).unwrap();
        assert_eq!(g[0].1, vec![(0, 1.0), (10, 1.0), (20, 1.0)]);
    }

    #[test]
    fn max_ignores_nan_unless_all_are_nan() {
        let a = vec![series(&[], &[(0, f64::NAN), (10, f64::NAN)])];
        let b = vec![series(&[], &[(0, 2.0), (10, f64::NAN)])];
        let out = combined("max(x)", vec![vec![a, b]]).unwrap();
        assert_eq!(out[0].1[0], (0, 2.0));
        assert!(out[0].1[1].1.is_nan());
    }

    #[test]
    fn avg_weights_by_count_without_overflow() {
        let avgs = vec![vec![series(&[], &[(0, 1e308)])], vec![series(&[], &[(0, 1.6e308)])]];
        let counts = vec![vec![series(&[], &[(0, 3.0)])], vec![series(&[], &[(0, 1.0)])]];
        let out = combined("avg(x)", vec![avgs, counts]).unwrap();
        assert!((out[0].1[0].1 - 1.15e308).abs() < 1e294, "{out:?}");
        let avgs = vec![vec![series(&[], &[(0, 2.0)])], vec![series(&[], &[(0, 8.0)])]];
        let counts = vec![vec![series(&[], &[(0, 3.0)])], vec![series(&[], &[(0, 1.0)])]];
        assert_eq!(combined("avg(x)", vec![avgs, counts]).unwrap()[0].1, vec![(0, 3.5)]);
    }

    #[test]
    fn topk_unions_shard_tops_and_refuses_ties() {
        let s = |i: &str, v: f64| series(&[("i", i)], &[(0, v)]);
        let a = vec![s("a", 9.0), s("b", 1.0)];
        let b = vec![s("c", 5.0), s("d", 7.0)];
        let out = combined("topk(2, x)", vec![vec![a.clone(), b.clone()]]).unwrap();
        assert_eq!(out.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), vec![r#"{i="a"}"#, r#"{i="d"}"#]);
        let out = combined("bottomk(1, x)", vec![vec![a.clone(), b]]).unwrap();
        assert_eq!(out[0].0, r#"{i="b"}"#);
        // 7 twice at the boundary: which one Prometheus keeps depends on every series.
        assert!(combined("topk(2, x)", vec![vec![a.clone(), vec![s("d", 7.0), s("e", 7.0)]]]).is_none());
        // A tie below the boundary does not matter.
        assert!(combined("topk(1, x)", vec![vec![a, vec![s("d", 7.0), s("e", 7.0)]]]).is_some());
    }

    #[test]
    fn count_values_sums_per_value() {
        let a = vec![series(&[("v", "1")], &[(0, 2.0)])];
        let b = vec![series(&[("v", "1")], &[(0, 1.0)]), series(&[("v", "2")], &[(0, 1.0)])];
        let out = combined(r#"count_values("v", x)"#, vec![vec![a, b]]).unwrap();
        assert_eq!(out, vec![(r#"{v="1"}"#.into(), vec![(0, 3.0)]), (r#"{v="2"}"#.into(), vec![(0, 1.0)])]);
    }
}
