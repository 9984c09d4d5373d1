//! The evaluator: pure and synchronous, over series fetched beforehand.
//!
//! Every node is evaluated at one timestamp at a time; a range query evaluates the
//! root at each step. Subqueries evaluate their inner expression at the aligned
//! steps inside their window. Label sets are borrowed from the fetched data until
//! an operation rewrites them.
//!
//! Limits bite while it runs: the deadline (and whether the caller still waits) is
//! checked at every step of a range query or subquery, and the samples held are
//! counted as selectors read them and as steps produce points, against `max_samples`.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use pharos_model::{Labels, METRIC_NAME, Sample, Series, is_stale_nan};
use regex::Regex;

use crate::annotations::{Annotation, Annotations};
use crate::ast::AggOp;
use crate::ast::{Node, Selector};
use crate::value::{Elem, Lbl, NameDropped, RangeElem, Val, check_unique, drop_name};
use crate::worker::Abandoned;
use crate::{Error, Value, VectorSample, aggregate, binary, functions, limits};

pub(crate) struct Evaluator<'d> {
    /// Fetched series per selector id: sorted by labels, samples in time order.
    data: &'d [Vec<Series>],
    /// Aggregations evaluated by the storage (pushdown), by node address.
    pushed: Option<&'d crate::Pushed>,
    lookback: i64,
    max_samples: usize,
    deadline: Option<Instant>,
    /// Whether the query's caller stopped waiting.
    abandoned: Option<Abandoned<'d>>,
    max_regex_bytes: usize,
    /// Prometheus 3 semantics ([`crate::Compat::Prometheus3`]): windows exclude their
    /// start, `(t - range, t]`, and the other differences noted where they apply.
    pub(crate) v3: bool,
    /// Samples held by the current top-level step (selected points and output).
    samples: Cell<usize>,
    /// The most `samples` ever held, and the samples read by selectors over all
    /// steps: Prometheus's `peakSamples` and `totalQueryableSamples`.
    peak_samples: Cell<usize>,
    queryable_samples: Cell<u64>,
    /// The query's `(start, end, step)` in ms (step 0 for an instant query), for the
    /// duration-expression functions `start()`, `end()`, `range()`, `step()`.
    pub(crate) query: Cell<(i64, i64, i64)>,
    /// Inner results of subqueries by node address: a subquery evaluated at successive
    /// outer steps (range queries, nested subqueries) reuses the overlap.
    subquery_states: RefCell<HashMap<usize, SubqueryState>>,
    /// Whether subquery results are worth caching (range query or nested subquery).
    cache_subqueries: Cell<bool>,
    subquery_depth: Cell<usize>,
    regex_cache: RefCell<HashMap<String, Regex>>,
    /// Warnings and infos collected so far.
    annotations: RefCell<Annotations>,
    /// Fetched series' label sets without `__name__`, made once per query.
    names: Option<&'d NameDropped>,
}

/// Ordered accumulation of points per label set (first-seen order).
#[derive(Default)]
pub(crate) struct SeriesBuilder {
    index: HashMap<Labels, usize>,
    /// Series by the address of a label set borrowed from the fetched data, which
    /// stays put for the whole evaluation: most steps find their series without
    /// hashing label strings.
    by_address: HashMap<usize, usize>,
    series: Vec<Series>,
}

impl SeriesBuilder {
    pub fn push(&mut self, labels: &Labels, s: Sample) {
        let i = self.index_of(labels);
        self.series[i].samples.push(s);
    }

    /// [`SeriesBuilder::push`] of an element at `t`, fast for borrowed labels.
    pub fn push_elem(&mut self, e: &Elem<'_>, t: i64) {
        let i = match &e.labels {
            Cow::Borrowed(l) => {
                let addr = *l as *const Labels as usize;
                match self.by_address.get(&addr) {
                    Some(&i) => i,
                    None => {
                        let i = self.index_of(l);
                        self.by_address.insert(addr, i);
                        i
                    }
                }
            }
            Cow::Owned(l) => self.index_of(l),
        };
        self.series[i].samples.push(Sample::new(t, e.v));
    }

    fn index_of(&mut self, labels: &Labels) -> usize {
        match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(Series::new(labels.clone(), Vec::new()));
                self.series.len() - 1
            }
        }
    }

    pub fn finish(self) -> Vec<Series> {
        self.series
    }
}

/// The inner results of one subquery node evaluated so far.
#[derive(Default)]
struct SubqueryState {
    /// The contiguous grid times evaluated: first and last.
    span: Option<(i64, i64)>,
    series: SeriesBuilder,
}

impl<'d> Evaluator<'d> {
    pub fn new(data: &'d [Vec<Series>], lookback: i64, max_samples: usize) -> Self {
        Self {
            data,
            pushed: None,
            lookback,
            max_samples,
            deadline: None,
            abandoned: None,
            max_regex_bytes: crate::EngineOptions::default().max_regex_bytes,
            v3: false,
            samples: Cell::new(0),
            peak_samples: Cell::new(0),
            queryable_samples: Cell::new(0),
            query: Cell::new((0, 0, 0)),
            subquery_states: RefCell::new(HashMap::new()),
            cache_subqueries: Cell::new(false),
            subquery_depth: Cell::new(0),
            regex_cache: RefCell::new(HashMap::new()),
            annotations: RefCell::new(Annotations::default()),
            names: None,
        }
    }

    /// Reuses the name-dropped label sets in `names` (made for this evaluator's data).
    pub fn with_name_cache(mut self, names: &'d NameDropped) -> Self {
        self.names = Some(names);
        self
    }

    /// The label set without `__name__`: for fetched series evaluated at several steps
    /// (range queries, subqueries) from the cache, so every step borrows the same one;
    /// a single step makes its own (no second copy when the result is returned).
    pub(crate) fn drop_name(&self, l: Lbl<'d>) -> Lbl<'d> {
        let names = self.names.filter(|_| self.cache_subqueries.get() || self.subquery_depth.get() > 0);
        match l {
            Cow::Borrowed(b) if b.get(METRIC_NAME).is_some() => match names.and_then(|n| n.get(self.data, b)) {
                Some(d) => Cow::Borrowed(d),
                None => drop_name(Cow::Borrowed(b)),
            },
            other => drop_name(other),
        }
    }

    /// Records a warning or info about the evaluation.
    pub(crate) fn annotate(&self, a: Annotation) {
        self.annotations.borrow_mut().add(a);
    }

    /// The annotations collected, leaving none behind.
    pub fn take_annotations(&self) -> Annotations {
        self.annotations.take()
    }

    /// Whether the current evaluation spans more than one step: a range query, or
    /// (as Prometheus evaluates them) a subquery.
    pub(crate) fn is_range_query(&self) -> bool {
        let (start, end, _) = self.query.get();
        start != end || self.subquery_depth.get() > 0
    }

    /// A compiled, fully anchored regex (cached for the query's lifetime); see
    /// [`limits::compile_regex`] for the errors.
    pub(crate) fn regex(&self, pattern: &str) -> Result<Regex, Option<Error>> {
        if let Some(re) = self.regex_cache.borrow().get(pattern) {
            return Ok(re.clone());
        }
        let re = limits::compile_regex(pattern, self.max_regex_bytes)?;
        self.regex_cache.borrow_mut().insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    pub fn with_pushed(mut self, pushed: &'d crate::Pushed) -> Self {
        self.pushed = (!pushed.is_empty()).then_some(pushed);
        self
    }

    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn with_abandoned(mut self, abandoned: Abandoned<'d>) -> Self {
        self.abandoned = Some(abandoned);
        self
    }

    pub fn with_regex_limit(mut self, max_bytes: usize) -> Self {
        self.max_regex_bytes = max_bytes;
        self
    }

    pub fn with_compat(mut self, compat: crate::Compat) -> Self {
        self.v3 = compat == crate::Compat::Prometheus3;
        self
    }

    /// Fails once the deadline passed or the caller stopped waiting.
    fn check_deadline(&self) -> Result<(), Error> {
        if self.abandoned.is_some_and(|gone| gone()) {
            return Err(Error::Execution("query abandoned by its caller".into()));
        }
        match self.deadline {
            Some(d) if Instant::now() > d => Err(Error::Timeout("expression evaluation".into())),
            _ => Ok(()),
        }
    }

    fn too_many_samples() -> Error {
        Error::TooManySamples("query execution".into())
    }

    /// Accounts for `n` more samples held in memory.
    pub(crate) fn add_samples(&self, n: usize) -> Result<(), Error> {
        let total = self.samples.get().saturating_add(n);
        self.samples.set(total);
        self.peak_samples.set(self.peak_samples.get().max(total));
        if total > self.max_samples {
            return Err(Self::too_many_samples());
        }
        Ok(())
    }

    /// `(peakSamples, totalQueryableSamples)` of the evaluation so far.
    pub fn sample_stats(&self) -> (usize, u64) {
        (self.peak_samples.get(), self.queryable_samples.get())
    }

    fn read_samples(&self, n: usize) {
        self.queryable_samples.set(self.queryable_samples.get().saturating_add(n as u64));
    }

    /// An instant query at `t`.
    pub fn instant(&self, root: &Node, t: i64) -> Result<Value, Error> {
        self.samples.set(0);
        self.query.set((t, t, 0));
        Ok(match self.eval(root, t)? {
            Val::Scalar(v) => Value::Scalar { t, v },
            Val::Str(s) => Value::String { t, s },
            Val::Vector(v) => Value::Vector(
                v.into_iter().map(|e| VectorSample { labels: e.labels.into_owned(), t, v: e.v }).collect(),
            ),
            Val::Matrix(m) => {
                let mut out: Vec<Series> =
                    m.into_iter().map(|r| Series::new(r.labels.into_owned(), r.samples.into_owned())).collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        })
    }

    /// A range query: the root evaluated at every step, as a matrix sorted by labels.
    pub fn range(&self, root: &Node, start: i64, end: i64, step: i64) -> Result<Value, Error> {
        let mut out = SeriesBuilder::default();
        let mut points = 0usize;
        let empty = Labels::default();
        self.query.set((start, end, step));
        self.cache_subqueries.set(end > start);
        // A point per step for certain: refused before the first step.
        if limits::always_yields(root) && limits::grid_points(start, end, step) > self.max_samples {
            return Err(Self::too_many_samples());
        }
        let mut t = start;
        while t <= end {
            self.check_deadline()?;
            self.samples.set(points);
            match self.eval(root, t)? {
                Val::Scalar(v) => {
                    out.push(&empty, Sample::new(t, v));
                    points += 1;
                }
                Val::Vector(v) => {
                    check_unique(&v)?;
                    points += v.len();
                    for e in &v {
                        out.push_elem(e, t);
                    }
                }
                other => {
                    return Err(Error::Execution(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )));
                }
            }
            self.peak_samples.set(self.peak_samples.get().max(points));
            if points > self.max_samples {
                return Err(Self::too_many_samples());
            }
            t = match t.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
        let mut m = out.finish();
        m.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(m))
    }

    pub(crate) fn eval(&self, node: &Node, t: i64) -> Result<Val<'d>, Error> {
        match node {
            Node::Number(v) => Ok(Val::Scalar(*v)),
            Node::Str(s) => Ok(Val::Str(s.clone())),
            Node::Vector(sel) => {
                let v: Vec<Elem<'d>> =
                    self.vector_selector(sel, t).map(|(l, s)| Elem { labels: Cow::Borrowed(l), v: s.v }).collect();
                self.read_samples(v.len());
                self.add_samples(v.len())?;
                Ok(Val::Vector(v))
            }
            Node::Matrix { sel, range } => Ok(Val::Matrix(self.matrix_selector(sel, *range, t)?)),
            Node::Subquery { expr, range, step, offset, at } => {
                Ok(Val::Matrix(self.subquery(expr, *range, *step, *offset, *at, t)?))
            }
            Node::Neg(e) => match self.eval(e, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => {
                    let out: Vec<Elem<'d>> =
                        v.into_iter().map(|e| Elem { labels: self.drop_name(e.labels), v: -e.v }).collect();
                    check_unique(&out)?;
                    Ok(Val::Vector(out))
                }
                other => Err(Error::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Node::Binary { op, lhs, rhs, matching, return_bool } => {
                let l = self.eval(lhs, t)?;
                let r = self.eval(rhs, t)?;
                binary::eval(*op, l, r, matching, *return_bool, self.v3, &|l| self.drop_name(l))
            }
            Node::Aggregate { .. } if self.pushed_result(node).is_some() => {
                let m = self.pushed_result(node).map(Vec::as_slice).unwrap_or(&[]);
                let v: Vec<Elem<'d>> = m
                    .iter()
                    .filter_map(|s| {
                        let i = s.samples.binary_search_by_key(&t, |x| x.t).ok()?;
                        Some(Elem { labels: Cow::Borrowed(&s.labels), v: s.samples[i].v })
                    })
                    .collect();
                self.add_samples(v.len())?;
                Ok(Val::Vector(v))
            }
            Node::Aggregate { op, param, expr, grouping, param_id, .. } => {
                let p = match param {
                    Some(p) => Some(self.eval(p, t)?),
                    None => None,
                };
                if let Some(Val::Scalar(x)) = &p {
                    self.check_param(*op, *x, *param_id);
                }
                let v = self.eval(expr, t)?.into_vector()?;
                aggregate::eval(*op, p, v, grouping, self.v3)
            }
            Node::Call { func, args, id, arg_ids } => functions::call(self, func, args, (*id, arg_ids), t),
        }
    }

    /// Prometheus's warnings about an aggregation's parameter `x`.
    fn check_param(&self, op: AggOp, x: f64, param_id: usize) {
        match op {
            AggOp::Quantile if x.is_nan() || !(0.0..=1.0).contains(&x) => {
                self.annotate(Annotation::invalid_quantile(x, param_id));
            }
            AggOp::LimitRatio if !(-1.0..=1.0).contains(&x) && !x.is_nan() => {
                self.annotate(Annotation::invalid_ratio(x, x.clamp(-1.0, 1.0), param_id));
            }
            _ => {}
        }
    }

    /// The combined result of a pushed-down aggregation node.
    fn pushed_result(&self, node: &Node) -> Option<&'d Vec<Series>> {
        self.pushed?.get(&(node as *const Node as usize))
    }

    /// The latest sample of every series at or before the selector's reference
    /// time and no older than the lookback delta; stale markers yield nothing.
    pub(crate) fn vector_selector(&self, sel: &Selector, t: i64) -> impl Iterator<Item = (&'d Labels, Sample)> + 'd {
        let ref_t = sel.ref_time(t);
        let min_t = ref_t.saturating_sub(self.lookback);
        let data: &'d [Series] = self.data.get(sel.id).map(Vec::as_slice).unwrap_or(&[]);
        let left_open = self.v3;
        data.iter().filter_map(move |s| {
            let i = s.samples.partition_point(|x| x.t <= ref_t);
            let x = *s.samples.get(i.checked_sub(1)?)?;
            let inside = if left_open { x.t > min_t } else { x.t >= min_t };
            (inside && !is_stale_nan(x.v)).then_some((&s.labels, x))
        })
    }

    /// Samples in `[ref - range, ref]` per series (stale markers were dropped on fetch);
    /// series without samples there are left out.
    fn matrix_selector(&self, sel: &Selector, range: i64, t: i64) -> Result<Vec<RangeElem<'d>>, Error> {
        let ref_t = sel.ref_time(t);
        let min_t = ref_t.saturating_sub(range);
        let data: &'d [Series] = self.data.get(sel.id).map(Vec::as_slice).unwrap_or(&[]);
        let mut out = Vec::new();
        let mut n = 0;
        for s in data {
            let lo = s.samples.partition_point(|x| x.t < min_t || (self.v3 && x.t == min_t));
            let hi = s.samples.partition_point(|x| x.t <= ref_t);
            if lo < hi {
                n += hi - lo;
                out.push(RangeElem { labels: Cow::Borrowed(&s.labels), samples: Cow::Borrowed(&s.samples[lo..hi]) });
            }
        }
        self.read_samples(n);
        self.add_samples(n)?;
        Ok(out)
    }

    /// The inner expression at every multiple of `step` in `[ref - range, ref]`.
    fn subquery(
        &self,
        expr: &Node,
        range: i64,
        step: i64,
        offset: i64,
        at: Option<i64>,
        t: i64,
    ) -> Result<Vec<RangeElem<'d>>, Error> {
        let ref_t = at.unwrap_or(t).saturating_sub(offset);
        let lo = ref_t.saturating_sub(range);
        // First multiple of step at or after lo.
        let mut first = lo.div_euclid(step).saturating_mul(step);
        if first < lo || (self.v3 && first == lo) {
            first = first.saturating_add(step);
        }
        // The samples held before; the subquery adds its points as it produces them.
        let held = self.samples.get();
        // A point per inner step for certain: refused before the first step.
        if limits::always_yields(expr)
            && held.saturating_add(limits::grid_points(first, ref_t, step)) > self.max_samples
        {
            return Err(Self::too_many_samples());
        }
        let cache = self.cache_subqueries.get() || self.subquery_depth.get() > 0;
        self.subquery_depth.set(self.subquery_depth.get() + 1);
        let res = if cache {
            self.subquery_cached(expr, step, first, ref_t)
        } else {
            let mut st = SubqueryState::default();
            self.extend_subquery(&mut st, expr, step, first, ref_t).map(|()| {
                st.series
                    .finish()
                    .into_iter()
                    .map(|s| RangeElem { labels: Cow::Owned(s.labels), samples: Cow::Owned(s.samples) })
                    .collect::<Vec<_>>()
            })
        };
        self.subquery_depth.set(self.subquery_depth.get() - 1);
        let out = res?;
        // From here on the subquery holds its result only.
        self.samples.set(held);
        self.add_samples(out.iter().map(|r| r.samples.len()).sum())?;
        Ok(out)
    }

    /// A subquery evaluated at successive outer steps: the inner results are kept
    /// per node and only the grid times not evaluated yet are computed.
    fn subquery_cached(&self, expr: &Node, step: i64, first: i64, last: i64) -> Result<Vec<RangeElem<'d>>, Error> {
        let key = expr as *const Node as usize;
        // Taken out of the map while evaluating, so nested subqueries can use theirs.
        let mut st = self.subquery_states.borrow_mut().remove(&key).unwrap_or_default();
        match st.span {
            Some((a, b)) if first >= a && first <= b.saturating_add(step) => {
                if last > b {
                    self.extend_subquery(&mut st, expr, step, b.saturating_add(step), last)?;
                }
            }
            _ => {
                st = SubqueryState::default();
                self.extend_subquery(&mut st, expr, step, first, last)?;
            }
        }
        let mut out = Vec::new();
        for s in &st.series.series {
            let i = s.samples.partition_point(|x| x.t < first);
            let j = s.samples.partition_point(|x| x.t <= last);
            if i < j {
                out.push(RangeElem {
                    labels: Cow::Owned(s.labels.clone()),
                    samples: Cow::Owned(s.samples[i..j].to_vec()),
                });
            }
        }
        self.subquery_states.borrow_mut().insert(key, st);
        Ok(out)
    }

    /// Evaluates `expr` at the grid times `from..=to` and appends to `st`, counting
    /// the points as they are produced.
    fn extend_subquery(&self, st: &mut SubqueryState, expr: &Node, step: i64, from: i64, to: i64) -> Result<(), Error> {
        let mut ti = from;
        while ti <= to {
            self.check_deadline()?;
            let before = self.samples.get();
            let val = self.eval(expr, ti)?;
            // What the step read is let go; the points it produced are kept.
            self.samples.set(before);
            let points = Self::push_subquery_step(&mut st.series, val, ti)?;
            self.add_samples(points)?;
            st.span = Some((st.span.map_or(ti, |(a, _)| a), ti));
            ti = match ti.checked_add(step) {
                Some(x) => x,
                None => break,
            };
        }
        Ok(())
    }

    /// Appends one step's result to `out`; the number of points appended.
    fn push_subquery_step(out: &mut SeriesBuilder, val: Val<'d>, ti: i64) -> Result<usize, Error> {
        match val {
            Val::Vector(v) => {
                for e in &v {
                    out.push_elem(e, ti);
                }
                Ok(v.len())
            }
            Val::Scalar(v) => {
                out.push(&Labels::default(), Sample::new(ti, v));
                Ok(1)
            }
            other => {
                Err(Error::Execution(format!("subquery is only allowed on instant vector, got {}", other.type_name())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{lower, parse};
    use crate::plan::{plan, prepare};
    use pharos_model::{Matcher, stale_nan};

    /// Evaluates `q` at `t` over in-memory series, going through plan and prepare.
    fn eval_at(series: &[Series], q: &str, start: i64, end: i64, step: i64) -> Value {
        let root = lower(&parse(q).unwrap(), start, end).unwrap();
        let reqs = plan(&root, start, end, 300_000, &Default::default());
        let mut data = vec![vec![]; reqs.len()];
        for r in &reqs {
            let mut got = vec![];
            for set in &r.matcher_sets {
                for s in series {
                    if set.iter().all(|m: &Matcher| m.matches_labels(&s.labels)) {
                        got.push(s.clone());
                    }
                }
            }
            data[r.id] = prepare(got, r);
        }
        let names = NameDropped::new(&data);
        let ev = Evaluator::new(&data, 300_000, 1_000_000).with_name_cache(&names);
        if start == end { ev.instant(&root, start).unwrap() } else { ev.range(&root, start, end, step).unwrap() }
    }

    fn metric(samples: &[(i64, f64)]) -> Series {
        Series::new(Labels::from_pairs(&[("__name__", "m")]), samples.iter().map(|&(t, v)| Sample::new(t, v)).collect())
    }

    fn values(v: &Value) -> Vec<f64> {
        match v {
            Value::Vector(v) => v.iter().map(|s| s.v).collect(),
            Value::Scalar { v, .. } => vec![*v],
            Value::Matrix(m) => m.iter().flat_map(|s| s.samples.iter().map(|x| x.v)).collect(),
            Value::String { .. } => vec![],
        }
    }

    #[test]
    fn lookback_is_closed_and_five_minutes() {
        let s = [metric(&[(0, 1.0)])];
        assert_eq!(values(&eval_at(&s, "m", 300_000, 300_000, 0)), vec![1.0]);
        assert!(values(&eval_at(&s, "m", 300_001, 300_001, 0)).is_empty());
        assert!(values(&eval_at(&s, "m", -1, -1, 0)).is_empty());
    }

    #[test]
    fn stale_marker_ends_series() {
        let s = [metric(&[(0, 1.0), (10_000, stale_nan()), (30_000, 2.0)])];
        assert_eq!(values(&eval_at(&s, "m", 5_000, 5_000, 0)), vec![1.0]);
        assert!(values(&eval_at(&s, "m", 20_000, 20_000, 0)).is_empty());
        assert_eq!(values(&eval_at(&s, "m", 30_000, 30_000, 0)), vec![2.0]);
        // Range selectors skip the marker.
        assert_eq!(values(&eval_at(&s, "count_over_time(m[1m])", 30_000, 30_000, 0)), vec![2.0]);
    }

    #[test]
    fn matrix_selector_window_is_closed() {
        let s = [metric(&[(0, 1.0), (10_000, 2.0), (20_000, 3.0)])];
        let v = eval_at(&s, "m[10s]", 20_000, 20_000, 0);
        assert_eq!(values(&v), vec![2.0, 3.0]);
        let v = eval_at(&s, "m[10s] offset 10s", 20_000, 20_000, 0);
        assert_eq!(values(&v), vec![1.0, 2.0]);
        let v = eval_at(&s, "m[10s] @ 10", 0, 0, 0);
        assert_eq!(values(&v), vec![1.0, 2.0]);
    }

    #[test]
    fn offset_and_at_in_range_queries() {
        let s = [metric(&[(0, 1.0), (10_000, 2.0), (20_000, 3.0)])];
        let v = eval_at(&s, "m offset 10s", 10_000, 30_000, 10_000);
        assert_eq!(values(&v), vec![1.0, 2.0, 3.0]);
        let v = eval_at(&s, "m @ 10", 0, 20_000, 10_000);
        assert_eq!(values(&v), vec![2.0, 2.0, 2.0]);
        let v = eval_at(&s, "m @ start()", 10_000, 20_000, 10_000);
        assert_eq!(values(&v), vec![2.0, 2.0]);
    }

    #[test]
    fn range_queries_match_instant_queries_at_every_step() {
        let mut s = vec![metric(&(0..40).map(|i| (i * 7_000, (i * i % 13) as f64)).collect::<Vec<_>>())];
        s.push(Series::new(
            Labels::from_pairs(&[("__name__", "m"), ("x", "y")]),
            vec![Sample::new(20_000, 1.0), Sample::new(30_000, stale_nan()), Sample::new(90_000, 4.0)],
        ));
        for q in [
            "m",
            "rate(m[20s])",
            "max_over_time(rate(m[20s])[1m:10s])",
            "sum_over_time(m[30s:7s] offset 5s)",
            "sum_over_time(sum_over_time(m[20s:5s])[1m:10s])",
            "sum_over_time(m[1m:10s] @ 50)",
            "min_over_time(sum_over_time(m[25s:5s] @ 100)[40s:15s])",
            "sum by (x) (m) + on() group_left scalar(count(m))",
            "-m * 2",
            "ln(rate(m[30s]))",
        ] {
            let Value::Matrix(m) = eval_at(&s, q, 0, 300_000, 9_000) else { panic!() };
            let mut t = 0;
            while t <= 300_000 {
                let mut want: Vec<(Labels, f64)> = match eval_at(&s, q, t, t, 0) {
                    Value::Vector(v) => v.into_iter().map(|x| (x.labels, x.v)).collect(),
                    other => panic!("{other:?}"),
                };
                want.sort_by(|a, b| a.0.cmp(&b.0));
                let got: Vec<(Labels, f64)> = m
                    .iter()
                    .filter_map(|s| s.samples.iter().find(|p| p.t == t).map(|p| (s.labels.clone(), p.v)))
                    .collect();
                assert_eq!(got, want, "{q} at {t}");
                t += 9_000;
            }
        }
    }

    #[test]
    fn subquery_steps_are_aligned() {
        let s = [metric(&[(0, 1.0), (10_000, 2.0), (20_000, 3.0)])];
        // steps at 0, 10s, 20s (window [-5s, 25s]) — aligned to multiples of 10s.
        let v = eval_at(&s, "sum_over_time(m[30s:10s])", 25_000, 25_000, 0);
        assert_eq!(values(&v), vec![6.0]);
    }
}
