//! pharos-promql: a PromQL engine with Prometheus 2.42 semantics by default and
//! Prometheus 3.x semantics on request ([`Compat`]).
//!
//! A query goes through four stages, and only one of them does I/O:
//!
//! 1. **parse** ([`promql_parser`]) and **lower** ([`ast`]): the parser's AST becomes a
//!    small internal tree with resolved matchers, millisecond offsets and `@` times
//!    (`start()`/`end()` resolved against the query), and numbered selectors. The text
//!    is checked against the length and depth limits ([`limits`]) first.
//! 2. **plan** ([`plan`]): a pure walk over the tree that computes, for every selector,
//!    the exact `[mint, maxt]` it needs, accounting for ranges, offsets, `@`, the
//!    lookback delta, subqueries and the whole `start..end` of a range query.
//! 3. **fetch** (here): every selector is fetched concurrently through
//!    [`Queryable::select`].
//! 4. **evaluate** ([`eval`]): a synchronous evaluator over the fetched series, step
//!    by step; it never touches I/O and is unit tested with in-memory series.
//!
//! Parsing, lowering and evaluation run on evaluation threads ([`worker`]), never on
//! the caller's async runtime. Samples are counted as they are fetched and as the
//! evaluator produces points, and the deadline is checked at every step, so the
//! limits of [`EngineOptions`] stop a query while it runs.
//!
//! By default semantics follow Prometheus 2.42: the lookback window and range selector windows
//! are closed on both ends (`[t - range, t]`), stale markers end a series, metric
//! names are dropped by functions and arithmetic as Prometheus does, and errors carry
//! Prometheus's messages.

mod aggregate;
mod annotations;
mod ast;
mod binary;
mod error;
mod eval;
mod functions;
mod histogram;
mod limits;
mod memory;
mod options;
mod plan;
mod position;
mod pushdown;
mod range_functions;
mod value;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pharos_model::{Labels, Matcher, Series};

pub use annotations::{Annotation, AnnotationKind, Annotations, Monotonicity};
pub use error::Error;
pub use memory::MemoryQueryable;
pub use options::{Compat, EngineOptions};
pub use pushdown::PushdownRequest;

/// What the engine reads from: the whole cluster's storage (a fan-out over shards) or one TSDB.
///
/// It is the read half of the storage contract (`pharos_storage::Storage::select`) bound
/// to one tenant and made async: the API builds one over the cluster's shards
/// (`pharos_cluster::Shard`), pushed-down evaluation one over a single shard. This crate
/// depends on neither.
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching every matcher that have samples with mint <= t <= maxt (ms), samples in
    /// time order restricted to that range. Order of series unspecified; label sets unique.
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError>;

    /// Whether [`Queryable::eval_partials`] works: the storage is split into shards that
    /// each hold whole series (see the `pushdown` module) and evaluate PromQL over
    /// their own. Without it (the default) every aggregation is evaluated here.
    fn supports_pushdown(&self) -> bool {
        false
    }

    /// Evaluates `req` on every shard over that shard's series only; one answer per
    /// shard. Called only when [`Queryable::supports_pushdown`] is true.
    async fn eval_partials(&self, req: &PushdownRequest) -> Result<Vec<Partial>, SelectError> {
        let _ = req;
        Err(SelectError("this storage cannot evaluate pushed-down aggregations".into()))
    }
}

/// One shard's answer to a [`PushdownRequest`]: the matrix, and the annotations of
/// its evaluation, their node ids counted in the request's expression.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partial {
    pub series: Vec<Series>,
    pub annotations: Annotations,
}

/// A storage failure reported by a [`Queryable`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

/// Results of pushed-down aggregation nodes, by node address.
pub(crate) type Pushed = std::collections::HashMap<usize, Vec<Series>>;

/// The PromQL engine. Cheap to clone; clones share the concurrency limit.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(EngineOptions::default())
    }
}

/// What a query cost: Prometheus's `stats` object of the query API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryStats {
    /// Waiting for a concurrency slot (`execQueueTime`).
    pub queue_time: Duration,
    /// Parsing, planning and fetching from storage (`queryPreparationTime`).
    pub prepare_time: Duration,
    /// Evaluation over the fetched series (`innerEvalTime`).
    pub inner_eval_time: Duration,
    /// From the call to the result (`execTotalTime`, `evalTotalTime`).
    pub total_time: Duration,
    /// Samples read by selectors, summed over every step (`totalQueryableSamples`).
    pub total_queryable_samples: u64,
    /// The most samples held at once by one step's evaluation (`peakSamples`).
    pub peak_samples: u64,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query's answer: its value and Prometheus's annotations, as the query API
/// shows them (`PromQL warning: ... (1:5)`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<Series>),
}

/// The API's view of an evaluation: annotations rendered with their positions.
fn result(value: Value, annos: &Annotations, query: &str, positions: &[usize]) -> QueryResult {
    let (warnings, infos) = annos.render(query, positions);
    QueryResult { value, warnings, infos }
}

/// Awaits `f`, failing with a timeout in `what` once `deadline` passes. Outside a
/// tokio runtime (no timer) `f` is awaited as is and the caller checks afterwards.
async fn before<T>(
    deadline: Instant,
    what: &str,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f.await;
    }
    match tokio::time::timeout_at(deadline.into(), f).await {
        Ok(res) => res,
        Err(_) => Err(Error::Timeout(what.into())),
    }
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent_queries.max(1)));
        Self { opts, slots }
    }

    /// Prometheus's `format_query`: the query parsed and printed in its canonical,
    /// indented form (within this engine's length and depth limits).
    pub async fn format_query(&self, query: &str) -> Result<String, Error> {
        limits::check_text(query, self.opts.max_query_length, self.opts.max_depth)?;
        let query = query.to_string();
        worker::run(move |_| Ok(ast::parse(&query)?.prettify())).await
    }

    /// Evaluates `query` at `t_ms`.
    pub async fn instant(&self, q: &dyn Queryable, query: &str, t_ms: i64) -> Result<QueryResult, Error> {
        self.instant_with_stats(q, query, t_ms).await.map(|(v, _)| v)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`; always a [`Value::Matrix`].
    pub async fn range(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, Error> {
        self.range_with_stats(q, query, start_ms, end_ms, step_ms).await.map(|(v, _)| v)
    }

    /// [`Engine::instant`], also reporting what the query cost.
    pub async fn instant_with_stats(
        &self,
        q: &dyn Queryable,
        query: &str,
        t_ms: i64,
    ) -> Result<(QueryResult, QueryStats), Error> {
        let (v, annos, positions, stats) = self.run(q, query, t_ms, t_ms, None).await?;
        Ok((result(v, &annos, query, &positions), stats))
    }

    /// [`Engine::range`], also reporting what the query cost.
    pub async fn range_with_stats(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(QueryResult, QueryStats), Error> {
        let (v, annos, positions, stats) = self.run(q, query, start_ms, end_ms, Some(step_ms)).await?;
        Ok((result(v, &annos, query, &positions), stats))
    }

    /// Parses `text` and lowers it for a query over `start..=end` (`step` is `None` for
    /// an instant query): the tree and the node positions. Runs on an evaluation thread.
    fn prepare(
        text: &str,
        start: i64,
        end: i64,
        step: Option<i64>,
        max_regex_bytes: usize,
    ) -> Result<(Box<ast::Node>, Vec<usize>), Error> {
        let expr = ast::parse(text)?;
        if let Some(step) = step {
            ast::check_range_query_type(&expr)?;
            if step <= 0 {
                return Err(Error::Execution(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
                ));
            }
            if end < start {
                return Err(Error::Execution("end timestamp must not be before start time".into()));
            }
        }
        let (root, positions) = ast::lower_with_positions(&expr, text, start, end, max_regex_bytes)?;
        Ok((Box::new(root), positions))
    }

    /// Waits for a slot, fetches and evaluates `text`; `step` is `None` for an instant
    /// query. Also the annotations and the node positions in `text`.
    async fn run(
        &self,
        q: &dyn Queryable,
        text: &str,
        start: i64,
        end: i64,
        step: Option<i64>,
    ) -> Result<(Value, Annotations, Vec<usize>, QueryStats), Error> {
        limits::check_text(text, self.opts.max_query_length, self.opts.max_depth)?;
        let began = Instant::now();
        let deadline = began + self.opts.timeout;
        let acquire = async { self.slots.acquire().await.map_err(|_| Error::Execution("query engine closed".into())) };
        let _slot = before(deadline, "query queue", acquire).await?;
        let mut stats = QueryStats { queue_time: began.elapsed(), ..QueryStats::default() };
        if Instant::now() > deadline {
            return Err(Error::Timeout("query queue".into()));
        }
        let prepared = Instant::now();
        let (owned, max_regex) = (text.to_string(), self.opts.max_regex_bytes);
        // Boxed: pushed-down results are keyed by node address, the root's included,
        // and the tree moves to another thread for evaluation.
        let (root, positions) = worker::run(move |_| Self::prepare(&owned, start, end, step, max_regex)).await?;
        let pushing = self.push_down(q, &root, start, end, step.unwrap_or(1));
        let (pushed, mut annos) = before(deadline, "query execution", pushing).await?;
        let fetched = before(deadline, "query execution", self.fetch(q, &root, &pushed, start, end, deadline)).await?;
        stats.prepare_time = prepared.elapsed();
        let evaluating = Instant::now();
        let opts = self.opts.clone();
        let (v, eval_annos, (peak, total)) = worker::run(move |abandoned| {
            let data = plan::arrange(fetched);
            let names = value::NameDropped::new(&data);
            let ev = eval::Evaluator::new(&data, opts.lookback_delta_ms, opts.max_samples)
                .with_name_cache(&names)
                .with_pushed(&pushed)
                .with_deadline(deadline)
                .with_abandoned(abandoned)
                .with_regex_limit(opts.max_regex_bytes)
                .with_compat(opts.compat);
            let v = match step {
                None => ev.instant(&root, start)?,
                Some(step) => ev.range(&root, start, end, step)?,
            };
            Ok((v, ev.take_annotations(), ev.sample_stats()))
        })
        .await?;
        stats.inner_eval_time = evaluating.elapsed();
        stats.total_time = began.elapsed();
        stats.peak_samples = peak as u64;
        stats.total_queryable_samples = total;
        annos.merge_shifted(eval_annos, 0);
        Ok((v, annos, positions, stats))
    }

    /// Evaluates the aggregations the storage can run shard by shard there (see the
    /// `pushdown` module): the combined results by node address, and the shards'
    /// annotations mapped to this query's node ids. Aggregations whose partials would
    /// not combine exactly are left out and evaluated as usual.
    async fn push_down(
        &self,
        q: &dyn Queryable,
        root: &ast::Node,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(Pushed, Annotations), Error> {
        let mut out = Pushed::new();
        let mut annos = Annotations::default();
        if !q.supports_pushdown() {
            return Ok((out, annos));
        }
        let nodes = pushdown::find(root);
        let futs = nodes.iter().map(|p| {
            futures::future::try_join_all(p.exprs.iter().map(|expr| {
                let req = PushdownRequest {
                    expr: expr.clone(),
                    start_ms: start,
                    end_ms: end,
                    step_ms: step,
                    lookback_ms: self.opts.lookback_delta_ms,
                    prometheus3: self.opts.compat == Compat::Prometheus3,
                };
                async move { q.eval_partials(&req).await.map_err(|e| Error::Storage(e.0)) }
            }))
        });
        let answers = futures::future::try_join_all(futs).await?;
        let mut samples = 0usize;
        for (p, partials) in nodes.iter().zip(answers) {
            samples += partials.iter().flatten().flat_map(|a| &a.series).map(|s| s.samples.len()).sum::<usize>();
            if samples > self.opts.max_samples {
                return Err(Error::TooManySamples("query execution".into()));
            }
            let mut node_annos = Annotations::default();
            let series: Vec<Vec<Vec<Series>>> = partials
                .into_iter()
                .map(|shards| {
                    shards
                        .into_iter()
                        .map(|a| {
                            // The shard's expression is this node's subtree: its node ids
                            // count from the node's own.
                            node_annos.merge_shifted(a.annotations, p.id);
                            a.series
                        })
                        .collect()
                })
                .collect();
            if let Some(m) = pushdown::combine(p, series, self.opts.compat == Compat::Prometheus3) {
                out.insert(p.node as *const ast::Node as usize, m);
                annos.merge_shifted(node_annos, 0);
            }
        }
        Ok((out, annos))
    }

    /// Evaluates a pushed-down expression over this shard's storage `q`: the shard's
    /// side of [`Queryable::eval_partials`], as a range query with the asking engine's
    /// lookback and semantics and this engine's limits.
    pub async fn eval_pushdown(&self, q: &dyn Queryable, req: &PushdownRequest) -> Result<Partial, Error> {
        let opts = EngineOptions {
            lookback_delta_ms: req.lookback_ms,
            compat: if req.prometheus3 { Compat::Prometheus3 } else { Compat::Prometheus2 },
            ..self.opts.clone()
        };
        let engine = Engine { opts, slots: self.slots.clone() };
        let step = Some(req.step_ms.max(1));
        match engine.run(q, &req.expr, req.start_ms, req.end_ms, step).await? {
            (Value::Matrix(series), annotations, _, _) => Ok(Partial { series, annotations }),
            _ => Err(Error::Execution("a pushed-down expression must give an instant vector".into())),
        }
    }

    /// Fetches every selector of `root` concurrently, except those under `pushed`
    /// nodes; every request with what storage returned for it (see [`plan::arrange`]).
    /// Fails as soon as the fetched series or samples exceed the limits.
    async fn fetch(
        &self,
        q: &dyn Queryable,
        root: &ast::Node,
        pushed: &Pushed,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<Vec<(plan::SelectRequest, Vec<Series>)>, Error> {
        let requests = plan::plan(root, start, end, self.opts.lookback_delta_ms, pushed);
        let series = AtomicUsize::new(0);
        let samples = AtomicUsize::new(0);
        let (series, samples) = (&series, &samples);
        let futs = requests.iter().map(|r| async move {
            let mut all = Vec::new();
            for set in &r.matcher_sets {
                let got = q.select(set, r.mint, r.maxt).await.map_err(|e| Error::Storage(e.0))?;
                let n: usize = got.iter().map(|s| s.samples.len()).sum();
                let total_series = series.fetch_add(got.len(), Ordering::Relaxed) + got.len();
                if self.opts.max_series > 0 && total_series > self.opts.max_series {
                    return Err(Error::TooManySeries(self.opts.max_series));
                }
                if samples.fetch_add(n, Ordering::Relaxed) + n > self.opts.max_samples {
                    return Err(Error::TooManySamples("query execution".into()));
                }
                all.extend(got);
            }
            Ok::<_, Error>(all)
        });
        let results = futures::future::try_join_all(futs).await?;
        if Instant::now() > deadline {
            return Err(Error::Timeout("query execution".into()));
        }
        Ok(requests.into_iter().zip(results).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_model::Sample;

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series::new(Labels::from_pairs(pairs), samples.iter().map(|&(t, v)| Sample::new(t, v)).collect())
    }

    fn store() -> MemoryQueryable {
        MemoryQueryable::new(vec![
            series(&[("__name__", "up"), ("job", "a")], &[(0, 1.0), (10_000, 2.0), (20_000, 3.0)]),
            series(&[("__name__", "up"), ("job", "b")], &[(0, 10.0), (10_000, 20.0)]),
            series(&[("__name__", "down"), ("job", "a")], &[(0, 5.0)]),
        ])
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn instant_selector_with_all_matcher_types() {
        let e = Engine::default();
        let s = store();
        for (q, want) in [
            (r#"up{job="a"}"#, vec![3.0]),
            (r#"up{job!="a"}"#, vec![20.0]),
            (r#"up{job=~"a|b"}"#, vec![3.0, 20.0]),
            (r#"up{job!~"a"}"#, vec![20.0]),
            (r#"{job="a"}"#, vec![5.0, 3.0]),
        ] {
            let Value::Vector(v) = run(e.instant(&s, q, 25_000)).unwrap().value else { panic!() };
            let mut got: Vec<f64> = v.iter().map(|s| s.v).collect();
            got.sort_by(f64::total_cmp);
            let mut want = want;
            want.sort_by(f64::total_cmp);
            assert_eq!(got, want, "{q}");
            assert!(v.iter().all(|s| s.t == 25_000));
        }
    }

    #[test]
    fn range_query_returns_matrix() {
        let e = Engine::default();
        let Value::Matrix(m) = run(e.range(&store(), "up", 0, 20_000, 10_000)).unwrap().value else { panic!() };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels.get("job"), Some("a"));
        let vals: Vec<f64> = m[0].samples.iter().map(|s| s.v).collect();
        assert_eq!(vals, vec![1.0, 2.0, 3.0]);
        let vals: Vec<f64> = m[1].samples.iter().map(|s| s.v).collect();
        assert_eq!(vals, vec![10.0, 20.0, 20.0]);
    }

    #[test]
    fn scalar_range_query_is_a_matrix_without_labels() {
        let e = Engine::default();
        let Value::Matrix(m) = run(e.range(&store(), "1 + 1", 0, 20_000, 10_000)).unwrap().value else { panic!() };
        assert_eq!(m.len(), 1);
        assert!(m[0].labels.is_empty());
        assert_eq!(m[0].samples.len(), 3);
    }

    #[test]
    fn errors_have_prometheus_types() {
        let e = Engine::default();
        let err = run(e.instant(&store(), "up{", 0)).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        let err = run(e.range(&store(), "up[5m]", 0, 10, 1)).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
    }

    #[test]
    fn max_samples_is_enforced_with_prometheus_message() {
        let small = Engine::new(EngineOptions { max_samples: 1, ..EngineOptions::default() });
        let err = run(small.instant(&store(), "up", 20_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err}");
        assert_eq!(err.error_type(), "execution");
        assert_eq!(err.to_string(), "query processing would load too many samples into memory in query execution");
        let err = run(small.range(&store(), "sum(up)", 0, 20_000, 10_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err}");
        // Samples fetched count as held: 3 samples of one series, limit 2.
        let two = Engine::new(EngineOptions { max_samples: 2, ..EngineOptions::default() });
        let err = run(two.instant(&store(), r#"count_over_time(up{job="a"}[1m])"#, 20_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err}");
        let ok = run(small.instant(&store(), r#"down"#, 20_000));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn max_series_is_enforced() {
        let e = Engine::new(EngineOptions { max_series: 2, ..EngineOptions::default() });
        assert!(run(e.instant(&store(), "up", 20_000)).is_ok());
        let err = run(e.instant(&store(), "up + on() group_left down", 20_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySeries(2)), "{err}");
        assert_eq!(err.to_string(), "the query hit the max number of series limit (limit: 2 series)");
        assert_eq!(err.error_type(), "execution");
    }

    #[test]
    fn timeout_is_enforced_with_prometheus_message() {
        let hasty = Engine::new(EngineOptions { timeout: Duration::ZERO, ..EngineOptions::default() });
        let err = run(hasty.instant(&store(), "up", 0)).unwrap_err();
        assert_eq!(err.error_type(), "timeout");
        assert!(err.to_string().starts_with("query timed out in "), "{err}");
    }

    /// Counts selects in flight. A select returns only once `wait_for` selects are in
    /// flight or all `total` have started, so every query holding a slot is seen at
    /// once (queries reach their select at different times: parsing runs on threads).
    #[derive(Default)]
    struct Counting {
        active: AtomicUsize,
        max_active: AtomicUsize,
        started: AtomicUsize,
        wait_for: usize,
        total: usize,
    }

    #[async_trait::async_trait]
    impl Queryable for Counting {
        async fn select(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Series>, SelectError> {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.started.fetch_add(1, Ordering::SeqCst);
            self.max_active.fetch_max(now, Ordering::SeqCst);
            futures::future::poll_fn(|cx| {
                let active = self.active.load(Ordering::SeqCst);
                if active >= self.wait_for || self.started.load(Ordering::SeqCst) >= self.total {
                    return std::task::Poll::Ready(());
                }
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            })
            .await;
            self.active.fetch_sub(1, Ordering::SeqCst);
            Ok(vec![])
        }
    }

    #[test]
    fn concurrent_queries_queue_beyond_the_limit() {
        for (limit, want_max) in [(1, 1), (3, 3)] {
            let e = Engine::new(EngineOptions { max_concurrent_queries: limit, ..EngineOptions::default() });
            let q = Counting { wait_for: want_max, total: 5, ..Counting::default() };
            let all = run(futures::future::join_all((0..5).map(|_| e.instant(&q, "up", 0))));
            assert!(all.iter().all(Result::is_ok), "queued, never rejected");
            assert_eq!(q.max_active.load(Ordering::SeqCst), want_max);
        }
    }

    #[test]
    fn stats_count_samples_read() {
        let e = Engine::default();
        let (_, st) = run(e.instant_with_stats(&store(), "up", 20_000)).unwrap();
        assert_eq!(st.total_queryable_samples, 2);
        let (_, st) = run(e.range_with_stats(&store(), r#"up{job="a"}"#, 0, 20_000, 10_000)).unwrap();
        assert_eq!(st.total_queryable_samples, 3);
        assert!(st.peak_samples >= 1);
        let (_, st) = run(e.instant_with_stats(&store(), r#"count_over_time(up[1m])"#, 20_000)).unwrap();
        assert_eq!(st.total_queryable_samples, 5);
        assert!(st.total_time >= st.inner_eval_time);
    }

    #[test]
    fn prometheus3_windows_are_left_open() {
        let v3 = Engine::new(EngineOptions { compat: Compat::Prometheus3, ..EngineOptions::default() });
        let count = |e: &Engine, q: &str, t: i64| match run(e.instant(&store(), q, t)).unwrap().value {
            Value::Vector(v) => v.iter().map(|s| s.v).sum::<f64>(),
            other => panic!("{other:?}"),
        };
        let q = r#"count_over_time(up{job="a"}[10s])"#;
        assert_eq!(count(&Engine::default(), q, 20_000), 2.0);
        assert_eq!(count(&v3, q, 20_000), 1.0);
        // Lookback: the sample at 0 is exactly 5m old at 300s.
        assert_eq!(count(&Engine::default(), "down", 300_000), 5.0);
        assert_eq!(count(&v3, "down", 300_000), 0.0);
    }

    #[test]
    fn instant_results_of_each_type() {
        let e = Engine::default();
        assert_eq!(run(e.instant(&store(), "1 + 2", 5)).unwrap().value, Value::Scalar { t: 5, v: 3.0 });
        assert_eq!(run(e.instant(&store(), r#""hi""#, 5)).unwrap().value, Value::String { t: 5, s: "hi".into() });
        let Value::Matrix(m) = run(e.instant(&store(), "up[15s]", 20_000)).unwrap().value else { panic!() };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(), vec![10_000, 20_000]);
    }

    #[test]
    fn annotations_name_the_expression_they_are_about() {
        let e = Engine::default();
        let warnings = |q: &str| run(e.range(&store(), q, 0, 20_000, 10_000)).unwrap().warnings;
        let sort = "PromQL warning: sort is ineffective for range queries since results are always ordered by labels";
        assert_eq!(warnings("sort(up)"), vec![format!("{sort} (1:1)")]);
        assert_eq!(warnings("(sort(up))"), vec![format!("{sort} (1:2)")]);
        assert_eq!(warnings("sum(\n  sort(up))"), vec![format!("{sort} (2:3)")]);
        assert!(run(e.instant(&store(), "sort(up)", 0)).unwrap().warnings.is_empty());
        let sub = run(e.instant(&store(), "count_over_time(sort(up)[20s:10s])", 20_000)).unwrap().warnings;
        assert_eq!(sub, vec![format!("{sort} (1:17)")]);
        let bad = |q: &str| run(e.instant(&store(), q, 20_000)).unwrap().warnings;
        let le = r#"PromQL warning: bucket label "le" is missing or has a malformed value of "" for metric name "up""#;
        assert_eq!(bad("histogram_quantile(0.5, up)"), vec![format!("{le} (1:25)")]);
        assert_eq!(bad("histogram_quantile(0.5, (up))"), vec![format!("{le} (1:25)")]);
        let q = "PromQL warning: quantile value should be between 0 and 1, got 2";
        assert_eq!(bad("quantile(1 + 1, up)"), vec![format!("{q} (1:10)")]);
        // The parser drops parentheses around a parameter; later positions still hold.
        let w = bad("quantile((2), histogram_quantile(2, up))");
        assert!(w[0].ends_with("got 2 (1:10)") && w[1].ends_with(r#""up" (1:37)"#), "{w:?}");
        let infos = run(e.instant(&store(), "rate(down[1m]) + rate(up[1m])", 20_000)).unwrap().infos;
        assert_eq!(infos.len(), 2, "{infos:?}");
        assert!(
            infos[0].ends_with(r#"_bucket: "down" (1:6)"#) && infos[1].ends_with(r#"_bucket: "up" (1:23)"#),
            "{infos:?}"
        );
    }

    struct Failing;
    #[async_trait::async_trait]
    impl Queryable for Failing {
        async fn select(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Series>, SelectError> {
            Err(SelectError("boom".into()))
        }
    }

    #[test]
    fn storage_errors_are_internal() {
        let err = run(Engine::default().instant(&Failing, "up", 0)).unwrap_err();
        assert_eq!(err.error_type(), "internal");
        assert_eq!(err.to_string(), "boom");
    }
}
