//! pharos-promql: a PromQL engine with Prometheus 2.42 semantics.
//!
//! A query goes through four stages, and only one of them does I/O:
//!
//! 1. **parse** ([`promql_parser`]) and **lower** ([`ast`]): the parser's AST becomes a
//!    small internal tree with resolved matchers, millisecond offsets and `@` times
//!    (`start()`/`end()` resolved against the query), and numbered selectors.
//! 2. **plan** ([`plan`]): a pure walk over the tree that computes, for every selector,
//!    the exact `[mint, maxt]` it needs, accounting for ranges, offsets, `@`, the
//!    lookback delta, subqueries and the whole `start..end` of a range query.
//! 3. **fetch** (here): every selector is fetched concurrently through
//!    [`Queryable::select`].
//! 4. **evaluate** ([`eval`]): a synchronous evaluator over the fetched series, step
//!    by step; it never touches I/O and is unit tested with in-memory series.
//!
//! Semantics follow Prometheus 2.42: the lookback window and range selector windows
//! are closed on both ends (`[t - range, t]`), stale markers end a series, metric
//! names are dropped by functions and arithmetic as Prometheus does, and errors carry
//! Prometheus's messages.

mod aggregate;
mod ast;
mod binary;
mod eval;
mod functions;
mod memory;
mod plan;
mod range_functions;
mod value;

use std::time::{Duration, Instant};

use pharos_model::{Labels, Matcher, Series};

pub use memory::MemoryQueryable;

/// What the engine reads from: the whole cluster's storage (a fan-out over shards) or one TSDB.
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching every matcher that have samples with mint <= t <= maxt (ms), samples in
    /// time order restricted to that range. Order of series unspecified; label sets unique.
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError>;
}

/// A storage failure reported by a [`Queryable`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant vector selector looks for a sample (default 5m).
    pub lookback_delta_ms: i64,
    /// The most samples a query may hold in memory at once (default 50M).
    pub max_samples: usize,
    /// Wall-clock limit of one query (default 2 minutes).
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { lookback_delta_ms: 300_000, max_samples: 50_000_000, timeout: Duration::from_secs(120) }
    }
}

/// The PromQL engine. Cheap to clone; holds no state besides its options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<Series>),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(String),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
    #[error("{0}")]
    Storage(String),
}

impl Error {
    /// The `errorType` Prometheus's HTTP API reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "internal",
        }
    }
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// Evaluates `query` at `t_ms`.
    pub async fn instant(&self, q: &dyn Queryable, query: &str, t_ms: i64) -> Result<Value, Error> {
        let deadline = Instant::now() + self.opts.timeout;
        let expr = ast::parse(query)?;
        let root = ast::lower(&expr, t_ms, t_ms)?;
        let data = self.fetch(q, &root, t_ms, t_ms, deadline).await?;
        let ev =
            eval::Evaluator::new(&data, self.opts.lookback_delta_ms, self.opts.max_samples).with_deadline(deadline);
        ev.instant(&root, t_ms)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`; always a [`Value::Matrix`].
    pub async fn range(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, Error> {
        let deadline = Instant::now() + self.opts.timeout;
        let expr = ast::parse(query)?;
        ast::check_range_query_type(&expr)?;
        if step_ms <= 0 {
            return Err(Error::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::Execution("end timestamp must not be before start time".into()));
        }
        let root = ast::lower(&expr, start_ms, end_ms)?;
        let data = self.fetch(q, &root, start_ms, end_ms, deadline).await?;
        let ev =
            eval::Evaluator::new(&data, self.opts.lookback_delta_ms, self.opts.max_samples).with_deadline(deadline);
        ev.range(&root, start_ms, end_ms, step_ms)
    }

    /// Fetches every selector of `root` concurrently; the result is indexed by selector id.
    async fn fetch(
        &self,
        q: &dyn Queryable,
        root: &ast::Node,
        start: i64,
        end: i64,
        deadline: Instant,
    ) -> Result<Vec<Vec<Series>>, Error> {
        let requests = plan::plan(root, start, end, self.opts.lookback_delta_ms);
        let futs = requests.iter().map(|r| async move {
            let mut all = Vec::new();
            for set in &r.matcher_sets {
                let got = q.select(set, r.mint, r.maxt).await.map_err(|e| Error::Storage(e.0))?;
                all.extend(got);
            }
            Ok::<_, Error>(all)
        });
        let results = futures::future::join_all(futs).await;
        if Instant::now() > deadline {
            return Err(Error::Timeout("query execution".into()));
        }
        let mut data = vec![Vec::new(); requests.len()];
        for (r, res) in requests.iter().zip(results) {
            data[r.id] = plan::prepare(res?, r);
        }
        Ok(data)
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
            let Value::Vector(v) = run(e.instant(&s, q, 25_000)).unwrap() else { panic!() };
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
        let Value::Matrix(m) = run(e.range(&store(), "up", 0, 20_000, 10_000)).unwrap() else { panic!() };
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
        let Value::Matrix(m) = run(e.range(&store(), "1 + 1", 0, 20_000, 10_000)).unwrap() else { panic!() };
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
    fn limits_are_enforced() {
        let small = Engine::new(EngineOptions { max_samples: 1, ..EngineOptions::default() });
        let err = run(small.instant(&store(), "up", 20_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err}");
        assert_eq!(err.error_type(), "execution");
        let err = run(small.range(&store(), "sum(up)", 0, 20_000, 10_000)).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{err}");
        let ok = run(small.instant(&store(), r#"up{job="a"}"#, 20_000));
        assert!(ok.is_ok());

        let hasty = Engine::new(EngineOptions { timeout: Duration::ZERO, ..EngineOptions::default() });
        let err = run(hasty.instant(&store(), "up", 0)).unwrap_err();
        assert_eq!(err.error_type(), "timeout");
    }

    #[test]
    fn instant_results_of_each_type() {
        let e = Engine::default();
        assert_eq!(run(e.instant(&store(), "1 + 2", 5)).unwrap(), Value::Scalar { t: 5, v: 3.0 });
        assert_eq!(run(e.instant(&store(), r#""hi""#, 5)).unwrap(), Value::String { t: 5, s: "hi".into() });
        let Value::Matrix(m) = run(e.instant(&store(), "up[15s]", 20_000)).unwrap() else { panic!() };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(), vec![10_000, 20_000]);
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
