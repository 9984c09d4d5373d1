//! Pushdown gives the answers of plain fan-out: every query of the shared conformance
//! lists (`../shared/conformance/*.promql`, on the data set `promql_diff.py` generates)
//! runs over a three-shard in-memory cluster with aggregations pushed down to the
//! shards and without, at the times `promql_diff.py compare` uses, and the answers
//! must agree (within the conformance check's relative 1e-6: pushed sums add in another
//! order), warnings and infos included. Skipped with a message when the shared folder
//! or python3 is missing.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pharos_cluster::{Cluster, LocalShard, Shard};
use pharos_model::{Labels, Matcher, Sample, Series};
use pharos_promql::{Engine, Partial, PushdownRequest, QueryResult, Queryable, SelectError, Value};
use pharos_storage::{MemStorage, SeriesSamples};

const TENANT: &str = "t";
/// The data set's end (a multiple of 3600) and sample interval.
const END_S: i64 = 1_764_000_000;
const STEP_S: i64 = 15;

struct View<'a> {
    cluster: &'a Cluster,
    pushed: AtomicUsize,
}

#[async_trait::async_trait]
impl Queryable for View<'_> {
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError> {
        self.cluster.select(TENANT, matchers, mint, maxt).await.map_err(|e| SelectError(e.to_string()))
    }
    fn supports_pushdown(&self) -> bool {
        self.cluster.supports_pushdown()
    }
    async fn eval_partials(&self, req: &PushdownRequest) -> Result<Vec<Partial>, SelectError> {
        self.pushed.fetch_add(1, Ordering::Relaxed);
        self.cluster.eval_partials(TENANT, req).await.map_err(|e| SelectError(e.to_string()))
    }
}

fn conformance_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    d.join("promql_diff.py").exists().then_some(d)
}

/// The data set as series, from `promql_diff.py write-openmetrics`.
fn data_set(conf: &Path) -> Option<Vec<SeriesSamples>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.om");
    let ok = std::process::Command::new("python3")
        .arg(conf.join("promql_diff.py"))
        .args(["--end", &END_S.to_string(), "write-openmetrics"])
        .arg(&file)
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let mut by_labels: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, rest) = line.rsplit_once('}').unwrap();
        let (name, labels) = series.split_once('{').unwrap();
        let mut pairs = vec![("__name__".to_string(), name.to_string())];
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").unwrap();
            pairs.push((k.to_string(), v.trim_end_matches('"').to_string()));
        }
        let mut it = rest.split_whitespace();
        let v = match it.next().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            x => x.parse().unwrap(),
        };
        let t: i64 = it.next().unwrap().parse().unwrap();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        by_labels.entry(Labels::from_pairs(&refs)).or_default().push(Sample::new(t * 1000, v));
    }
    Some(by_labels.into_iter().map(|(labels, samples)| SeriesSamples { labels, samples }).collect())
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn same_series(a: &[Series], b: &[Series]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.labels == y.labels
                && x.samples.len() == y.samples.len()
                && x.samples.iter().zip(&y.samples).all(|(p, q)| p.t == q.t && close(p.v, q.v))
        })
}

/// Equal values (within rounding) and identical warnings and infos.
fn same(a: &Result<QueryResult, pharos_promql::Error>, b: &Result<QueryResult, pharos_promql::Error>) -> bool {
    match (a, b) {
        (Err(x), Err(y)) => x.to_string() == y.to_string(),
        (Ok(x), Ok(y)) => {
            let sorted = |v: &[String]| {
                let mut v = v.to_vec();
                v.sort();
                v
            };
            sorted(&x.warnings) == sorted(&y.warnings)
                && sorted(&x.infos) == sorted(&y.infos)
                && same_value(&x.value, &y.value)
        }
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Vector(x), Value::Vector(y)) => {
            let sorted = |v: &Vec<pharos_promql::VectorSample>| {
                let mut s: Vec<Series> =
                    v.iter().map(|e| Series::new(e.labels.clone(), vec![Sample::new(e.t, e.v)])).collect();
                s.sort_by(|p, q| p.labels.cmp(&q.labels));
                s
            };
            same_series(&sorted(x), &sorted(y))
        }
        (Value::Matrix(x), Value::Matrix(y)) => same_series(x, y),
        (Value::Scalar { t, v }, Value::Scalar { t: t2, v: v2 }) => t == t2 && close(*v, *v2),
        (x, y) => x == y,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_queries_give_the_same_answers_pushed_down() {
    let Some(conf) = conformance_dir() else {
        eprintln!("SKIPPED: ../shared/conformance not found beside the repository");
        return;
    };
    let Some(data) = data_set(&conf) else {
        eprintln!("SKIPPED: python3 could not generate the conformance data set");
        return;
    };
    let shards: Vec<Arc<dyn Shard>> =
        (0..3).map(|_| Arc::new(LocalShard::new(Arc::new(MemStorage::default()))) as Arc<dyn Shard>).collect();
    let pushing = Cluster::new(shards.clone());
    pushing.append(TENANT, data).await.unwrap();
    let plain = Cluster::new(shards).without_pushdown();
    let (pv, fv) = (
        View { cluster: &pushing, pushed: AtomicUsize::new(0) },
        View { cluster: &plain, pushed: AtomicUsize::new(0) },
    );
    let engine = Engine::default();
    let start_s = END_S - 6 * 3600;
    let (mut checked, mut annotated, mut differ) = (0, 0, Vec::new());
    for file in ["queries.promql", "compliance-queries.promql"] {
        let text = std::fs::read_to_string(conf.join(file)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let q = line.strip_prefix("FAIL ").unwrap_or(line);
            for t in [END_S - 1800 + 7, END_S - 3 * 3600 + 11, start_s + 400 * STEP_S + 3] {
                let (a, b) = (engine.instant(&pv, q, t * 1000).await, engine.instant(&fv, q, t * 1000).await);
                if !same(&a, &b) {
                    differ.push(format!("instant {q} @ {t}"));
                }
            }
            let (s, e) = ((END_S - 3 * 3600 + 7) * 1000, (END_S - 8) * 1000);
            let (a, b) = (engine.range(&pv, q, s, e, 60_000).await, engine.range(&fv, q, s, e, 60_000).await);
            if !same(&a, &b) {
                differ.push(format!("range {q}"));
            }
            annotated += usize::from(b.is_ok_and(|r| !r.warnings.is_empty() || !r.infos.is_empty()));
            checked += 4;
        }
    }
    let pushed = pv.pushed.load(Ordering::Relaxed);
    eprintln!("{checked} evaluations compared ({annotated} with annotations), {pushed} pushed-down sub-expressions");
    assert!(differ.is_empty(), "{} of {checked} answers differ when pushed down:\n{}", differ.len(), differ.join("\n"));
    assert_eq!(fv.pushed.load(Ordering::Relaxed), 0);
    assert!(pushed > 300, "pushdown barely exercised: {pushed}");
}
