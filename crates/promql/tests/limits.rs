//! The engine's limits on hostile queries: each test sends what would overflow a stack,
//! exhaust memory or run unbounded without its limit, and expects the documented error.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pharos_model::{Labels, Sample, Series};
use pharos_promql::{Engine, EngineOptions, Error, MemoryQueryable, QueryResult, Value};

fn store() -> MemoryQueryable {
    MemoryQueryable::new(vec![Series::new(
        Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
        (0..10).map(|i| Sample::new(i * 10_000, 1.0)).collect(),
    )])
}

fn engine(opts: EngineOptions) -> Engine {
    Engine::new(opts)
}

/// Runs `f` on a thread with a tokio worker's default stack (2 MiB), as the query API
/// does: whatever the engine does on the caller's thread must fit there.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
}

fn instant(e: &Engine, q: &str, t: i64) -> Result<QueryResult, Error> {
    futures::executor::block_on(e.instant(&store(), q, t))
}

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn hostile_nesting_and_length_are_refused_before_parsing() {
    let hostile = [
        nested("(", "1", ")", 100_000),
        vec!["1"; 100_000].join("+"),
        nested("-(", "1", ")", 50_000),
        nested("-", "1", "", 100_000),
        nested("abs(", "vector(1)", ")", 50_000),
        nested("sum(", "up", ")", 50_000),
        nested("max_over_time((", "up", ")[1m:])", 5_000),
        vec!["up"; 40_000].join(" or "),
    ];
    for q in hostile {
        assert!(q.len() <= EngineOptions::default().max_query_length);
        let e = Engine::default();
        let err = on_small_stack(move || instant(&e, &q, 0)).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("(max query depth)"), "{err}");
    }
    let long = format!("up{{job=\"{}\"}}", "a".repeat(300_000));
    let err = on_small_stack(move || instant(&Engine::default(), &long, 0)).unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert!(err.to_string().contains("limit of 262144 bytes (max query length)"), "{err}");
    let err = futures::executor::block_on(Engine::default().format_query(&nested("(", "1", ")", 100_000)));
    assert!(matches!(err, Err(Error::TooLarge(_))), "{err:?}");
}

/// Queries as deep as the limit allows parse, plan, evaluate and drop without
/// overflowing any stack, with the caller on a 2 MiB stack.
#[test]
fn queries_at_the_depth_limit_evaluate() {
    let max = EngineOptions::default().max_depth;
    let at_limit = [
        (nested("(", "1", ")", max - 1), 1.0),
        (vec!["1"; max].join("+"), max as f64),
        (nested("-(", "1", ")", max / 2 - 1), 1.0),
        (nested("abs(", "vector(1)", ")", max - 2), 1.0),
        (nested("sum(", "up", ")", max - 1), 1.0),
        (nested("(", "up", ")", max - 1), 1.0),
        (vec!["up"; max].join(" or "), 1.0),
        (nested("max_over_time((", "vector(1)", ")[20s:10s])", max / 3 - 1), 1.0),
    ];
    for (q, want) in at_limit {
        let e = Engine::default();
        let shown: String = q.chars().take(40).collect();
        let got = on_small_stack(move || instant(&e, &q, 90_000)).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let v = match got.value {
            Value::Scalar { v, .. } => v,
            Value::Vector(v) => v[0].v,
            other => panic!("{other:?}"),
        };
        assert_eq!(v.abs(), want, "{shown}");
    }
}

#[test]
fn a_subquery_that_must_exceed_max_samples_is_refused_before_it_runs() {
    // Without the check, 50M steps run (and 800 MB are held) before the count bites;
    // the deadline would come first.
    let e = engine(EngineOptions { timeout: Duration::from_secs(30), ..EngineOptions::default() });
    for q in ["count_over_time(vector(1)[100y:1ms])", "sum_over_time((-vector(time()) * 2)[100y:1ms])"] {
        let err = instant(&e, q, 0).unwrap_err();
        assert!(matches!(err, Error::TooManySamples(_)), "{q}: {err}");
        assert_eq!(err.to_string(), "query processing would load too many samples into memory in query execution");
    }
    let err = futures::executor::block_on(e.range(&store(), "vector(1)", 0, i64::MAX, 1)).unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    // A subquery that fits is evaluated.
    let small = engine(EngineOptions { max_samples: 1_000, ..EngineOptions::default() });
    assert!(instant(&small, "count_over_time(vector(1)[900ms:1ms])", 0).is_ok());
    assert!(instant(&small, "count_over_time(vector(1)[1s:1ms])", 0).is_err());
}

#[test]
fn subquery_points_are_counted_as_they_are_produced() {
    // `label_replace` hides from the static check that every step yields a point.
    let e = engine(EngineOptions { max_samples: 1_000, timeout: Duration::from_secs(30), ..EngineOptions::default() });
    let q = r#"count_over_time(label_replace(vector(1), "a", "b", "", "")[100y:1ms])"#;
    let err = instant(&e, q, 0).unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    // What one inner step reads is let go once it has produced its point: 10 samples
    // read per step, 1 kept.
    let q = "count_over_time(count(count_over_time(up[100s]))[1s:1ms])";
    let ok = instant(&engine(EngineOptions { max_samples: 1_100, ..EngineOptions::default() }), q, 100_000);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn the_deadline_bites_while_evaluation_runs() {
    let e = engine(EngineOptions { timeout: Duration::from_millis(200), ..EngineOptions::default() });
    // Trillions of steps that produce nothing: only the deadline ends them.
    let err = instant(&e, "count_over_time(absent_metric[100y:1ms])", 0).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(err.to_string(), "query timed out in expression evaluation");
    assert_eq!(err.error_type(), "timeout");
    let err = futures::executor::block_on(e.range(&store(), "absent_metric", 0, i64::MAX, 1)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
}

#[test]
fn the_deadline_bites_inside_a_tokio_runtime_too() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let e = engine(EngineOptions { timeout: Duration::from_millis(200), ..EngineOptions::default() });
    let err = rt.block_on(e.instant(&store(), "count_over_time(absent_metric[100y:1ms])", 0)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    // Evaluation runs off the runtime's only thread: other tasks run meanwhile.
    let ticked = rt.block_on(async {
        let ticker = tokio::spawn(async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let _ = e.instant(&store(), "count_over_time(absent_metric[100y:1ms])", 0).await;
        ticker.is_finished()
    });
    assert!(ticked, "the runtime was blocked while the query ran");
}

#[test]
fn regex_size_is_limited() {
    let e = engine(EngineOptions { max_regex_bytes: 10_000, ..EngineOptions::default() });
    for q in [r#"up{job=~"a{2000}"}"#, r#"label_replace(up, "x", "$1", "job", "(a{2000})")"#] {
        let err = instant(&e, q, 0).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{q}: {err}");
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().contains("limit of 10000 bytes (max regex size)"), "{err}");
        assert!(instant(&Engine::default(), q, 0).is_ok(), "{q}");
    }
}
