//! The conformance suite every [`Storage`] implementation must pass.
//!
//! Call [`run_all`] with a constructor of fresh, empty engines. Each check
//! panics with a message on failure, as test code does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pharos_model::{Labels, MatchOp, Matcher, Sample, stale_nan};

use crate::{MetaQuery, RejectReason, SeriesSamples, Storage};

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs(pairs),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

/// Runs every check against fresh engines from `new`.
pub fn run_all(new: &mut dyn FnMut() -> Box<dyn Storage>) {
    append_and_select(&*new());
    matchers(&*new());
    duplicates_and_out_of_order(&*new());
    special_floats_kept_exactly(&*new());
    tenants_are_isolated(&*new());
    labels_and_series(&*new());
    many_samples_span_chunks(&*new());
    invalid_labels_rejected(&*new());
    metadata_in_a_time_range(&*new());
    metadata_limit_truncates(&*new());
}

pub fn append_and_select(s: &dyn Storage) {
    let r = s.append("t", &[series(&[("__name__", "up"), ("job", "a")], &[(1000, 1.0), (2000, 0.0)])]).unwrap();
    assert_eq!(r.accepted, 2);
    assert!(r.rejected.is_empty());
    let got = s.select("t", &[Matcher::equal("__name__", "up")], 0, 10_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![Sample::new(1000, 1.0), Sample::new(2000, 0.0)]);
    // time range is inclusive on both ends and filters samples
    let got = s.select("t", &[Matcher::equal("__name__", "up")], 2000, 2000).unwrap();
    assert_eq!(got[0].samples, vec![Sample::new(2000, 0.0)]);
    // a series without samples in range is not returned
    assert!(s.select("t", &[Matcher::equal("__name__", "up")], 3000, 4000).unwrap().is_empty());
    // backfill of a new series far in the past is accepted
    let r = s.append("t", &[series(&[("__name__", "old")], &[(-86_400_000, 5.0)])]).unwrap();
    assert_eq!(r.accepted, 1);
}

pub fn matchers(s: &dyn Storage) {
    s.append(
        "t",
        &[
            series(&[("__name__", "http"), ("job", "api"), ("code", "200")], &[(1, 1.0)]),
            series(&[("__name__", "http"), ("job", "api"), ("code", "500")], &[(1, 2.0)]),
            series(&[("__name__", "http"), ("job", "web")], &[(1, 3.0)]),
            series(&[("__name__", "rpc"), ("job", "api")], &[(1, 4.0)]),
        ],
    )
    .unwrap();
    let count = |ms: &[Matcher]| s.select("t", ms, 0, 10).unwrap().len();
    assert_eq!(count(&[Matcher::equal("__name__", "http")]), 3);
    assert_eq!(count(&[m(MatchOp::Regex, "__name__", "h.*")]), 3);
    assert_eq!(count(&[m(MatchOp::Regex, "__name__", ".+")]), 4);
    assert_eq!(count(&[Matcher::equal("job", "api"), m(MatchOp::NotEqual, "__name__", "rpc")]), 2);
    assert_eq!(count(&[Matcher::equal("__name__", "http"), m(MatchOp::NotRegex, "code", "5..")]), 2);
    // != matches series without the label
    assert_eq!(count(&[Matcher::equal("__name__", "http"), m(MatchOp::NotEqual, "code", "200")]), 2);
    // ="" selects series without the label
    assert_eq!(count(&[Matcher::equal("__name__", "http"), Matcher::equal("code", "")]), 1);
    // =~ that matches the empty string also selects series without the label
    assert_eq!(count(&[Matcher::equal("__name__", "http"), m(MatchOp::Regex, "code", "2..|")]), 2);
    // !~ ".+" is "label absent"
    assert_eq!(count(&[m(MatchOp::Regex, "job", ".+"), m(MatchOp::NotRegex, "code", ".+")]), 2);
    assert_eq!(count(&[Matcher::equal("__name__", "nope")]), 0);
    // several equality matchers, in any order, narrow to their intersection
    assert_eq!(count(&[Matcher::equal("job", "api"), Matcher::equal("__name__", "http")]), 2);
    assert_eq!(
        count(&[Matcher::equal("code", "500"), Matcher::equal("job", "api"), Matcher::equal("__name__", "http")]),
        1
    );
    assert_eq!(count(&[Matcher::equal("__name__", "rpc"), Matcher::equal("job", "web")]), 0);
    assert_eq!(
        count(&[Matcher::equal("__name__", "http"), Matcher::equal("job", "web"), Matcher::equal("code", "200")]),
        0
    );
}

pub fn duplicates_and_out_of_order(s: &dyn Storage) {
    let l = &[("__name__", "x")];
    s.append("t", &[series(l, &[(10, 1.0), (20, 2.0)])]).unwrap();
    // exact duplicate: accepted silently, stored once
    let r = s.append("t", &[series(l, &[(20, 2.0)])]).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (1, 1, 0));
    // same timestamp, other value: rejected
    let r = s.append("t", &[series(l, &[(20, 3.0), (15, 1.0), (5, 1.0), (30, 3.0)])]).unwrap();
    assert_eq!(r.accepted, 1);
    let reasons: Vec<_> = r.rejected.iter().map(|r| (r.reason, r.count)).collect();
    assert_eq!(reasons, vec![(RejectReason::DuplicateTimestamp, 1), (RejectReason::OutOfOrder, 2)]);
    assert_eq!(r.rejected[1].first_t, 15);
    let got = s.select("t", &[Matcher::equal("__name__", "x")], 0, 100).unwrap();
    let ts: Vec<_> = got[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(ts, vec![(10, 1.0), (20, 2.0), (30, 3.0)]);
    // the same series twice in one batch is taken in order
    let r = s.append("t", &[series(l, &[(40, 4.0)]), series(l, &[(35, 1.0), (50, 5.0)])]).unwrap();
    assert_eq!(r.accepted, 2);
    assert_eq!(r.rejected.len(), 1);
}

pub fn special_floats_kept_exactly(s: &dyn Storage) {
    let odd_nan = f64::from_bits(0x7ff8_dead_beef_0001);
    let values = [stale_nan(), f64::NAN, odd_nan, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE / 2.0];
    let samples: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 15_000, *v)).collect();
    s.append("t", &[series(&[("__name__", "f")], &samples)]).unwrap();
    let got = s.select("t", &[Matcher::equal("__name__", "f")], i64::MIN, i64::MAX).unwrap();
    let bits: Vec<u64> = got[0].samples.iter().map(|s| s.v.to_bits()).collect();
    assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

pub fn tenants_are_isolated(s: &dyn Storage) {
    s.append("a", &[series(&[("__name__", "x")], &[(1, 1.0)])]).unwrap();
    s.append("b", &[series(&[("__name__", "x")], &[(1, 2.0)])]).unwrap();
    let a = s.select("a", &[Matcher::equal("__name__", "x")], 0, 10).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].samples[0].v, 1.0);
    assert!(s.select("c", &[Matcher::equal("__name__", "x")], 0, 10).unwrap().is_empty());
    assert_eq!(s.label_names("c", &MetaQuery::default()).unwrap(), Vec::<String>::new());
}

pub fn labels_and_series(s: &dyn Storage) {
    s.append(
        "t",
        &[
            series(&[("__name__", "a"), ("job", "j1")], &[(1, 1.0)]),
            series(&[("__name__", "b"), ("job", "j2"), ("zone", "z")], &[(1, 1.0)]),
        ],
    )
    .unwrap();
    let all = MetaQuery::default();
    let q = |ms: &[Matcher]| MetaQuery::matching(ms);
    assert_eq!(s.label_names("t", &all).unwrap(), vec!["__name__", "job", "zone"]);
    assert_eq!(s.label_names("t", &q(&[Matcher::equal("__name__", "a")])).unwrap(), vec!["__name__", "job"]);
    assert_eq!(s.label_values("t", "job", &all).unwrap(), vec!["j1", "j2"]);
    assert_eq!(s.label_values("t", "job", &q(&[Matcher::equal("zone", "z")])).unwrap(), vec!["j2"]);
    assert!(s.label_values("t", "nope", &all).unwrap().is_empty());
    let got = s.series("t", &q(&[m(MatchOp::Regex, "job", "j.")])).unwrap();
    assert_eq!(got.len(), 2);
}

pub fn many_samples_span_chunks(s: &dyn Storage) {
    let samples: Vec<(i64, f64)> = (0..1000).map(|i| (i * 15_000, (i * i) as f64 / 7.0)).collect();
    for part in samples.chunks(33) {
        s.append("t", &[series(&[("__name__", "long")], part)]).unwrap();
    }
    let got = s.select("t", &[Matcher::equal("__name__", "long")], 0, i64::MAX).unwrap();
    assert_eq!(got[0].samples.len(), 1000);
    assert!(got[0].samples.iter().zip(&samples).all(|(a, b)| a.t == b.0 && a.v == b.1));
    s.flush().unwrap();
    let got = s.select("t", &[Matcher::equal("__name__", "long")], 150_000, 300_000).unwrap();
    assert_eq!(got[0].samples.len(), 11);
    assert_eq!(got[0].samples[0].t, 150_000);
}

pub fn invalid_labels_rejected(s: &dyn Storage) {
    let r = s
        .append("t", &[series(&[("job", "no-name")], &[(1, 1.0)]), series(&[("__name__", "ok")], &[(1, 1.0)])])
        .unwrap();
    assert_eq!(r.accepted, 1);
    assert_eq!(r.rejected[0].reason, RejectReason::InvalidLabels);
}

const HOUR: i64 = 3_600_000;

/// Metadata calls count only the series with a sample in the time range:
/// a series whose samples lie on both sides of the range, or whose chunk
/// spans it without a sample inside, does not count. Checked before and
/// after a flush, so an engine's in-memory and on-disk paths both answer.
pub fn metadata_in_a_time_range(s: &dyn Storage) {
    fn name(v: &str) -> [(&str, &str); 2] {
        [("__name__", "m"), ("s", v)]
    }
    s.append(
        "t",
        &[
            // samples at both ends of the first partition, then one 3 h later
            series(&name("a"), &[(1000, 1.0), (100_000, 1.0), (3 * HOUR, 1.0)]),
            series(&[("__name__", "m"), ("s", "b"), ("only_b", "1")], &[(15_000, 1.0)]),
            series(&name("c"), &[(1000, 1.0), (3 * HOUR, 1.0)]),
            series(&name("d"), &[(10 * HOUR, 1.0)]),
            series(&name("e"), &[(1000, 1.0), (100_000, 1.0)]),
        ],
    )
    .unwrap();
    let values = |mint, maxt| {
        let q = MetaQuery { mint, maxt, ..MetaQuery::default() };
        s.label_values("t", "s", &q).unwrap().join(",")
    };
    let check = || {
        assert_eq!(values(i64::MIN, i64::MAX), "a,b,c,d,e");
        assert_eq!(values(10_000, 20_000), "b");
        assert_eq!(values(0, 5000), "a,c,e");
        assert_eq!(values(2000, 5000), "");
        assert_eq!(values(90_000, 100_000), "a,e");
        assert_eq!(values(2000, 4 * HOUR), "a,b,c,e");
        assert_eq!(values(3 * HOUR, 3 * HOUR), "a,c");
        assert_eq!(values(9 * HOUR, i64::MAX), "d");
        assert_eq!(values(11 * HOUR, i64::MAX), "");
        assert_eq!(values(5000, 0), "");
        let q = MetaQuery { mint: 10_000, maxt: 20_000, ..MetaQuery::default() };
        assert_eq!(s.label_names("t", &q).unwrap(), vec!["__name__", "only_b", "s"]);
        let q = MetaQuery { mint: 0, maxt: 5000, ..MetaQuery::default() };
        assert_eq!(s.label_names("t", &q).unwrap(), vec!["__name__", "s"]);
        let q = MetaQuery { matchers: vec![m(MatchOp::Regex, "s", "a|d")], mint: 0, maxt: 5000, limit: 0 };
        let got = s.series("t", &q).unwrap();
        assert_eq!(got, vec![Labels::from_pairs(&name("a"))]);
    };
    check();
    s.flush().unwrap();
    check();
}

/// A limit cuts the sorted answer of every metadata call.
pub fn metadata_limit_truncates(s: &dyn Storage) {
    s.append(
        "t",
        &["c", "a", "d", "b"].map(|v| series(&[("__name__", "m"), ("s", v), (&format!("l_{v}"), "1")], &[(1000, 1.0)])),
    )
    .unwrap();
    let q = |limit| MetaQuery { limit, ..MetaQuery::default() };
    assert_eq!(s.label_values("t", "s", &q(2)).unwrap(), vec!["a", "b"]);
    assert_eq!(s.label_values("t", "s", &q(0)).unwrap(), vec!["a", "b", "c", "d"]);
    assert_eq!(s.label_names("t", &q(3)).unwrap(), vec!["__name__", "l_a", "l_b"]);
    let got = s.series("t", &q(1)).unwrap();
    assert_eq!(got, vec![Labels::from_pairs(&[("__name__", "m"), ("s", "a"), ("l_a", "1")])]);
    // the limit applies after the matchers and the time range
    let q = MetaQuery { matchers: vec![m(MatchOp::Regex, "s", "c|d")], mint: 0, maxt: 2000, limit: 1 };
    assert_eq!(s.label_values("t", "s", &q).unwrap(), vec!["c"]);
    let q = MetaQuery { mint: 2000, limit: 1, ..MetaQuery::default() };
    assert!(s.label_values("t", "s", &q).unwrap().is_empty());
}
