//! Aggregation pushdown across shards: the querier asks every shard to evaluate a
//! PromQL sub-expression over its own series ([`Cluster::eval_partials`]); a shard
//! answers with `pharos-promql`'s engine over its local storage ([`eval_local`]).
//! Which aggregations are pushed and how their partials combine is decided in
//! `pharos-promql` (`pushdown.rs`); this module only carries the requests.
//!
//! Correctness rests on one assumption: every series lives wholly on one shard.
//! [`Cluster::route`] sends a series to the shard owning the hash of its full label
//! set, and a replicated shard is one raft group, so that holds as long as the shard
//! count has not changed; [`Cluster::without_pushdown`] turns pushdown off for a
//! cluster whose series may be split over shards.

use pharos_model::{Matcher, Series};
use pharos_promql::{
    Annotation, AnnotationKind, Annotations, Monotonicity, Partial, PushdownRequest, Queryable, SelectError,
};
use pharos_proto::pharos::v1 as pb;

use crate::{Cluster, Error, LocalShard, Shard};

/// One tenant's series on one local shard, as PromQL storage.
struct ShardView<'a> {
    shard: &'a LocalShard,
    tenant: &'a str,
}

#[async_trait::async_trait]
impl Queryable for ShardView<'_> {
    async fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, SelectError> {
        self.shard.select(self.tenant, matchers, mint, maxt).await.map_err(|e| SelectError(e.to_string()))
    }
}

/// A shard's answer to a pushed-down expression: the engine over its own series
/// (storage reads run on the blocking pool, as every [`LocalShard`] call does).
pub(crate) async fn eval_local(shard: &LocalShard, tenant: &str, req: &PushdownRequest) -> Result<Partial, Error> {
    let view = ShardView { shard, tenant };
    shard.engine.eval_pushdown(&view, req).await.map_err(|e| match e {
        pharos_promql::Error::Parse(m) => Error::BadRequest(m),
        other => Error::Internal(other.to_string()),
    })
}

pub(crate) fn request_to_proto(tenant: &str, r: &PushdownRequest) -> pb::EvalRequest {
    pb::EvalRequest {
        tenant: tenant.to_string(),
        expr: r.expr.clone(),
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        step_ms: r.step_ms,
        lookback_ms: r.lookback_ms,
        prometheus3: r.prometheus3,
    }
}

pub(crate) fn annotations_to_proto(a: &Annotations) -> Vec<pb::Annotation> {
    a.iter()
        .map(|a| {
            let m = a.monotonicity.unwrap_or(Monotonicity {
                min_ts: 0,
                max_ts: 0,
                min_bucket: 0.0,
                max_bucket: 0.0,
                max_diff: 0.0,
                extra: 0,
            });
            pb::Annotation {
                warning: a.kind == AnnotationKind::Warning,
                text: a.text.clone(),
                node: a.node as u64,
                has_monotonicity: a.monotonicity.is_some(),
                min_ts: m.min_ts,
                max_ts: m.max_ts,
                min_bucket: m.min_bucket,
                max_bucket: m.max_bucket,
                max_diff: m.max_diff,
                extra: m.extra,
            }
        })
        .collect()
}

pub(crate) fn annotations_from_proto(v: Vec<pb::Annotation>) -> Annotations {
    let mut out = Annotations::default();
    for a in v {
        out.add(Annotation {
            kind: if a.warning { AnnotationKind::Warning } else { AnnotationKind::Info },
            text: a.text,
            node: usize::try_from(a.node).unwrap_or(usize::MAX),
            monotonicity: a.has_monotonicity.then_some(Monotonicity {
                min_ts: a.min_ts,
                max_ts: a.max_ts,
                min_bucket: a.min_bucket,
                max_bucket: a.max_bucket,
                max_diff: a.max_diff,
                extra: a.extra,
            }),
        });
    }
    out
}

pub(crate) fn request_from_proto(r: pb::EvalRequest) -> (String, PushdownRequest) {
    let req = PushdownRequest {
        expr: r.expr,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        step_ms: r.step_ms,
        lookback_ms: r.lookback_ms,
        prometheus3: r.prometheus3,
    };
    (r.tenant, req)
}

impl Cluster {
    /// Whether queries may push aggregations down: more than one shard (on one shard
    /// pushing down saves nothing) and pushdown not turned off.
    pub fn supports_pushdown(&self) -> bool {
        self.pushdown && self.shards.len() > 1
    }

    /// The same cluster with pushdown turned off (every aggregation evaluated by the
    /// querier over selected series): for a cluster whose series may have pieces on
    /// several shards, and to compare both ways in tests.
    pub fn without_pushdown(mut self) -> Self {
        self.pushdown = false;
        self
    }

    /// Evaluates `req` on every shard concurrently: one answer per shard.
    pub async fn eval_partials(&self, tenant: &str, req: &PushdownRequest) -> Result<Vec<Partial>, Error> {
        let calls = self.shards.iter().map(|s| s.eval(tenant, req));
        futures::future::join_all(calls).await.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_survive_the_wire() {
        let mut a = Annotations::default();
        a.add(Annotation::invalid_quantile(2.0, 3));
        let m = Monotonicity { min_ts: 1, max_ts: 2, min_bucket: 0.5, max_bucket: 1.0, max_diff: 3.0, extra: 4 };
        a.add(Annotation::forced_monotonicity(1, m));
        assert_eq!(annotations_from_proto(annotations_to_proto(&a)), a);
    }
    use pharos_model::{Labels, Sample};
    use pharos_storage::{MemStorage, SeriesSamples};
    use std::sync::Arc;

    #[tokio::test]
    async fn every_shard_answers_over_its_own_series() {
        let shards: Vec<Arc<dyn Shard>> =
            (0..3).map(|_| Arc::new(LocalShard::new(Arc::new(MemStorage::default()))) as Arc<dyn Shard>).collect();
        let cluster = Cluster::new(shards);
        let batch = (0..30)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                samples: vec![Sample::new(1_000, 1.0)],
            })
            .collect();
        cluster.append("t", batch).await.unwrap();
        let req = PushdownRequest {
            expr: "count(m)".into(),
            start_ms: 1_000,
            end_ms: 1_000,
            step_ms: 1,
            lookback_ms: 300_000,
            prometheus3: false,
        };
        let parts = cluster.eval_partials("t", &req).await.unwrap();
        assert_eq!(parts.len(), 3);
        let total: f64 = parts.iter().flat_map(|p| &p.series).map(|s| s.samples[0].v).sum();
        assert_eq!(total, 30.0);
        assert!(parts.iter().all(|p| p.series.len() == 1), "each shard holds some of the series");
        // `m` does not end like a counter's name: every shard says so about node 1.
        let req = PushdownRequest { expr: "sum(rate(m[1m]))".into(), ..req };
        for p in cluster.eval_partials("t", &req).await.unwrap() {
            let a: Vec<_> = p.annotations.iter().collect();
            assert_eq!(a.len(), 1, "{a:?}");
            assert_eq!((a[0].kind, a[0].node), (AnnotationKind::Info, 2));
        }
        assert!(cluster.supports_pushdown());
        assert!(!cluster.without_pushdown().supports_pushdown());
    }
}
