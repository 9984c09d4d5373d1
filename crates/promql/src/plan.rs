//! Selector collection: a pure walk that computes the exact time range every
//! selector needs, so all of them can be fetched up front.

use pharos_model::{Matcher, Series, is_stale_nan, merge_series};

use crate::ast::Node;

/// One `Queryable::select` to run (once per matcher set).
#[derive(Debug, Clone)]
pub(crate) struct SelectRequest {
    pub id: usize,
    pub matcher_sets: Vec<Vec<Matcher>>,
    pub mint: i64,
    pub maxt: i64,
    /// Range selectors never look at stale markers, so they are dropped on arrival.
    pub strip_stale: bool,
}

/// The requests for every selector of `root`, for evaluation at every time in
/// `start..=end`, ordered by selector id.
/// Nodes in `pushed` were evaluated by the storage: their selectors are not fetched.
pub(crate) fn plan(root: &Node, start: i64, end: i64, lookback: i64, pushed: &crate::Pushed) -> Vec<SelectRequest> {
    let mut out = Vec::new();
    visit(root, start, end, lookback, pushed, &mut out);
    out.sort_by_key(|r| r.id);
    out
}

/// `[ws, we]` is the span of evaluation times of `node`.
fn visit(node: &Node, ws: i64, we: i64, lookback: i64, pushed: &crate::Pushed, out: &mut Vec<SelectRequest>) {
    if pushed.contains_key(&(node as *const Node as usize)) {
        return;
    }
    match node {
        Node::Number(_) | Node::Str(_) => {}
        Node::Vector(sel) => {
            let (lo, hi) = span(sel.at, sel.offset, ws, we);
            out.push(SelectRequest {
                id: sel.id,
                matcher_sets: sel.matcher_sets.clone(),
                mint: lo.saturating_sub(lookback),
                maxt: hi,
                strip_stale: false,
            });
        }
        Node::Matrix { sel, range } => {
            let (lo, hi) = span(sel.at, sel.offset, ws, we);
            out.push(SelectRequest {
                id: sel.id,
                matcher_sets: sel.matcher_sets.clone(),
                mint: lo.saturating_sub(*range),
                maxt: hi,
                strip_stale: true,
            });
        }
        Node::Subquery { expr, range, offset, at, .. } => {
            let (lo, hi) = span(*at, *offset, ws, we);
            visit(expr, lo.saturating_sub(*range), hi, lookback, pushed, out);
        }
        Node::Neg(e) => visit(e, ws, we, lookback, pushed, out),
        Node::Binary { lhs, rhs, .. } => {
            visit(lhs, ws, we, lookback, pushed, out);
            visit(rhs, ws, we, lookback, pushed, out);
        }
        Node::Aggregate { param, expr, .. } => {
            if let Some(p) = param {
                visit(p, ws, we, lookback, pushed, out);
            }
            visit(expr, ws, we, lookback, pushed, out);
        }
        Node::Call { args, .. } => args.iter().for_each(|a| visit(a, ws, we, lookback, pushed, out)),
    }
}

/// The reference times of a node with `@`/offset evaluated over `[ws, we]`.
fn span(at: Option<i64>, offset: i64, ws: i64, we: i64) -> (i64, i64) {
    let (lo, hi) = at.map_or((ws, we), |a| (a, a));
    (lo.saturating_sub(offset), hi.saturating_sub(offset))
}

/// The fetched series indexed by selector id, each request's answer [`prepare`]d.
pub(crate) fn arrange(fetched: Vec<(SelectRequest, Vec<Series>)>) -> Vec<Vec<Series>> {
    let mut data = vec![Vec::new(); fetched.iter().map(|(r, _)| r.id + 1).max().unwrap_or(0)];
    for (r, got) in fetched {
        data[r.id] = prepare(got, &r);
    }
    data
}

/// Normalises what storage returned for a request: label sets merged and sorted
/// (storage order), samples clipped to the range, stale markers dropped for range
/// selectors, and empty series removed.
pub(crate) fn prepare(series: Vec<Series>, r: &SelectRequest) -> Vec<Series> {
    let mut merged = merge_series(series);
    for s in &mut merged {
        s.samples.retain(|x| x.t >= r.mint && x.t <= r.maxt && !(r.strip_stale && is_stale_nan(x.v)));
    }
    merged.retain(|s| !s.samples.is_empty());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{lower, parse};
    use pharos_model::{Labels, Sample, stale_nan};

    fn ranges(q: &str, start: i64, end: i64) -> Vec<(i64, i64)> {
        let n = lower(&parse(q).unwrap(), start, end).unwrap();
        plan(&n, start, end, 300_000, &Default::default()).iter().map(|r| (r.mint, r.maxt)).collect()
    }

    #[test]
    fn vector_selector_needs_lookback() {
        assert_eq!(ranges("up", 1_000_000, 1_000_000), vec![(700_000, 1_000_000)]);
        assert_eq!(ranges("up", 1_000_000, 2_000_000), vec![(700_000, 2_000_000)]);
    }

    #[test]
    fn matrix_selector_offset_and_at() {
        assert_eq!(ranges("rate(up[1m] offset 1m)", 600_000, 600_000), vec![(480_000, 540_000)]);
        assert_eq!(ranges("rate(up[1m] @ 100)", 600_000, 900_000), vec![(40_000, 100_000)]);
        assert_eq!(ranges("up @ start()", 600_000, 900_000), vec![(300_000, 600_000)]);
        assert_eq!(ranges("up @ end() offset -1m", 600_000, 900_000), vec![(660_000, 960_000)]);
    }

    #[test]
    fn subquery_widens_inner_range() {
        // Inner selector evaluated over [t-10m-1m, t-1m], each needing 5m of lookback.
        assert_eq!(
            ranges("max_over_time(up[10m:1m] offset 1m)", 3_600_000, 3_600_000),
            vec![(3_600_000 - 60_000 - 600_000 - 300_000, 3_540_000)]
        );
        assert_eq!(
            ranges("max_over_time(rate(up[1m])[10m:1m] @ 1000)", 0, 5_000_000),
            vec![(1_000_000 - 600_000 - 60_000, 1_000_000)]
        );
    }

    #[test]
    fn prepare_strips_stale_for_ranges_only() {
        let s = Series::new(
            Labels::from_pairs(&[("a", "b")]),
            vec![Sample::new(1, 1.0), Sample::new(2, stale_nan()), Sample::new(50, 1.0)],
        );
        let mut r = SelectRequest { id: 0, matcher_sets: vec![], mint: 0, maxt: 10, strip_stale: true };
        assert_eq!(prepare(vec![s.clone()], &r)[0].samples.len(), 1);
        r.strip_stale = false;
        assert_eq!(prepare(vec![s], &r)[0].samples.len(), 2);
    }
}
