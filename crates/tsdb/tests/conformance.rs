//! The RocksDB engine passes the conformance suite of `pharos-storage`
//! (as the in-memory engine does there); it also
//! keeps everything across a reopen, and can be replaced wholesale by a
//! checkpoint of another (what a replica installing a raft snapshot does).

#![allow(clippy::unwrap_used)]

use pharos_model::{Labels, Matcher, Sample};
use pharos_storage::{MemStorage, MetaQuery, SeriesSamples, Storage, conformance};
use pharos_tsdb::{RocksOptions, RocksStorage};

#[test]
fn rocks_storage_passes_the_suite() {
    let dirs: std::cell::RefCell<Vec<tempfile::TempDir>> = Default::default();
    conformance::run_all(&mut || {
        let d = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
        dirs.borrow_mut().push(d);
        Box::new(s)
    });
}

fn batch(name: &str, from: i64, n: i64) -> Vec<SeriesSamples> {
    vec![SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", name), ("job", "j")]),
        samples: (from..from + n).map(|i| Sample::new(i * 1000, i as f64)).collect(),
    }]
}

fn all(s: &RocksStorage, name: &str) -> Vec<Sample> {
    let got = s.select("t", &[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).unwrap();
    got.into_iter().flat_map(|s| s.samples).collect()
}

#[test]
fn reopen_replays_the_log_and_keeps_order_checks() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
        s.append("t", &batch("a", 0, 300)).unwrap(); // two full chunks and a head
        s.append("t", &batch("b", 0, 5)).unwrap();
    } // dropped without flush: only the log has the heads
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    assert_eq!(all(&s, "a").len(), 300);
    assert_eq!(all(&s, "b").len(), 5);
    let r = s.append("t", &batch("a", 299, 2)).unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 1));
    let r = s.append("t", &batch("a", 10, 1)).unwrap();
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(all(&s, "a").len(), 301);
}

#[test]
fn flush_then_reopen_reads_flushed_heads_once() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
        s.append("t", &batch("a", 0, 50)).unwrap();
        s.flush().unwrap();
        s.append("t", &batch("a", 50, 10)).unwrap();
        s.flush().unwrap();
        s.append("t", &batch("a", 60, 5)).unwrap();
    }
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    let got = all(&s, "a");
    assert_eq!(got.len(), 65);
    assert!(got.windows(2).all(|w| w[0].t < w[1].t));
    s.append("t", &batch("a", 65, 100)).unwrap();
    assert_eq!(all(&s, "a").len(), 165);
}

#[test]
fn foreign_data_dir_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notes.txt"), "hello").unwrap();
    let e = RocksStorage::open(d.path(), RocksOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not written by Pharos"), "{e}");
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn retention_rejects_and_drops_old_partitions() {
    let d = tempfile::tempdir().unwrap();
    let day = 86_400_000;
    let opts = RocksOptions { retention_ms: Some(3 * day), ..Default::default() };
    let s = RocksStorage::open(d.path(), opts).unwrap();
    let t = now();
    let old = |name: &str, at: i64| SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", name)]),
        samples: vec![Sample::new(at, 1.0), Sample::new(at + 1000, 2.0)],
    };
    // Older than retention: rejected with a reason.
    let r = s.append("t", &[old("ancient", t - 4 * day)]).unwrap();
    assert_eq!(r.rejected[0].reason, pharos_storage::RejectReason::TooOld);
    assert_eq!(r.rejected[0].count, 2);
    // Backfill two days ago and fresh data are both fine.
    s.append("t", &[old("backfill", t - 2 * day), old("fresh", t - 1000)]).unwrap();
    s.flush().unwrap();
    assert_eq!(all(&s, "backfill").len(), 2);
    // A day and a half later the backfill is past retention and gone.
    assert_eq!(s.apply_retention(t + 2 * day).unwrap(), 1);
    assert!(all(&s, "backfill").is_empty());
    assert_eq!(all(&s, "fresh").len(), 2);
    assert_eq!(s.num_series(), 1);
    drop(s);
    let s = RocksStorage::open(d.path(), RocksOptions { retention_ms: Some(3 * day), ..Default::default() }).unwrap();
    assert_eq!(s.num_series(), 1);
    assert!(all(&s, "backfill").is_empty());
}

#[test]
fn queries_across_partitions_and_restart() {
    let d = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    {
        let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
        // 10 hours at 1 minute: five partitions, chunks cut at their edges.
        for i in 0..600 {
            s.append(
                "t",
                &[SeriesSamples {
                    labels: Labels::from_pairs(&[("__name__", "p"), ("x", "1")]),
                    samples: vec![Sample::new(i * 60_000, i as f64)],
                }],
            )
            .unwrap();
        }
    }
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    let got = s.select("t", &[Matcher::equal("x", "1")], 3 * hour, 7 * hour).unwrap();
    assert_eq!(got[0].samples.len(), 241);
    assert_eq!(got[0].samples[0].t, 3 * hour);
    assert_eq!(all(&s, "p").len(), 600);
}

#[test]
fn limits_reject_with_reasons() {
    let d = tempfile::tempdir().unwrap();
    let opts = RocksOptions { max_series_per_tenant: Some(2), max_label_value_len: 8, ..Default::default() };
    let s = RocksStorage::open(d.path(), opts).unwrap();
    let one = |name: &str, v: &str| SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", name), ("v", v)]),
        samples: vec![Sample::new(1, 1.0)],
    };
    let r = s.append("t", &[one("a", "x"), one("b", "x"), one("c", "x"), one("d", "much-too-long")]).unwrap();
    let reasons: Vec<_> = r.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["series_limit", "label_too_long"]);
    assert_eq!(r.accepted, 2);
    // Another tenant has its own budget; existing series still take samples.
    assert_eq!(s.append("u", &[one("c", "x")]).unwrap().accepted, 1);
    let more = SeriesSamples { samples: vec![Sample::new(2, 1.0)], ..one("a", "x") };
    assert_eq!(s.append("t", &[more]).unwrap().accepted, 1);
}

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random batches (out-of-order and duplicate samples, odd floats, many
/// partitions, reopen in between) go into the RocksDB engine and the
/// in-memory reference; both must answer every select identically.
#[test]
fn property_rocks_agrees_with_memory() {
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let d = tempfile::tempdir().unwrap();
        let mem = MemStorage::new();
        let mut rocks = Some(RocksStorage::open(d.path(), RocksOptions::default()).unwrap());
        let mut clock = [0i64; 20];
        for round in 0..60 {
            let mut batch = Vec::new();
            for _ in 0..rng.below(8) + 1 {
                let sid = rng.below(20) as usize;
                let labels = Labels::from_pairs(&[
                    ("__name__", if sid.is_multiple_of(2) { "even" } else { "odd" }),
                    ("sid", &sid.to_string()),
                    ("grp", &(sid % 3).to_string()),
                ]);
                let mut samples = Vec::new();
                for _ in 0..rng.below(40) {
                    let step = match rng.below(10) {
                        0 => -(rng.below(5) as i64) * 1000,     // out of order or duplicate
                        1 => (rng.below(4) as i64) * 3_600_000, // jump partitions
                        _ => rng.below(30_000) as i64,
                    };
                    clock[sid] += step;
                    let v = match rng.below(20) {
                        0 => f64::NAN,
                        1 => pharos_model::stale_nan(),
                        2 => f64::INFINITY,
                        _ => (rng.below(1000) as f64) / 7.0,
                    };
                    samples.push(Sample::new(clock[sid], v));
                }
                batch.push(SeriesSamples { labels, samples });
            }
            let a = mem.append("t", &batch).unwrap();
            let b = rocks.as_ref().unwrap().append("t", &batch).unwrap();
            assert_eq!((a.accepted, a.rejected.len()), (b.accepted, b.rejected.len()), "seed {seed} round {round}");
            match rng.below(10) {
                0 => rocks.as_ref().unwrap().flush().unwrap(),
                1 => {
                    drop(rocks.take());
                    rocks = Some(RocksStorage::open(d.path(), RocksOptions::default()).unwrap());
                }
                _ => {}
            }
        }
        let r = rocks.as_ref().unwrap();
        let hi = *clock.iter().max().unwrap();
        for ms in [
            vec![Matcher::equal("__name__", "even")],
            vec![Matcher::new(pharos_model::MatchOp::Regex, "grp", "1|2").unwrap()],
            vec![Matcher::new(pharos_model::MatchOp::NotEqual, "grp", "0").unwrap(), Matcher::equal("__name__", "odd")],
        ] {
            for (lo, hi) in [(i64::MIN, i64::MAX), (hi / 3, hi / 2), (0, 7_200_000)] {
                let want = mem.select("t", &ms, lo, hi).unwrap();
                let mut got = r.select("t", &ms, lo, hi).unwrap();
                got.sort_by(|a, b| a.labels.cmp(&b.labels));
                assert_eq!(want.len(), got.len(), "seed {seed}");
                for (w, g) in want.iter().zip(&got) {
                    assert_eq!(w.labels, g.labels);
                    let wb: Vec<(i64, u64)> = w.samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
                    let gb: Vec<(i64, u64)> = g.samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
                    assert_eq!(wb, gb, "seed {seed} series {}", w.labels);
                }
                // The metadata calls name exactly the series select returns.
                let q = MetaQuery { matchers: ms.clone(), mint: lo, maxt: hi, limit: 0 };
                let names: Vec<Labels> = want.iter().map(|w| w.labels.clone()).collect();
                assert_eq!(r.series("t", &q).unwrap(), names, "seed {seed} {lo}..{hi}");
                assert_eq!(r.label_values("t", "sid", &q).unwrap(), mem.label_values("t", "sid", &q).unwrap());
            }
        }
    }
}

#[test]
fn restore_replaces_everything_with_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let src = RocksStorage::open(&d.path().join("src"), RocksOptions::default()).unwrap();
    src.append("t", &batch("a", 0, 300)).unwrap(); // full chunks and an open head
    src.flush().unwrap();
    src.append("t", &batch("a", 300, 7)).unwrap(); // only in the engine's log
    src.append("t", &batch("b", 0, 3)).unwrap();
    src.checkpoint(&d.path().join("cp")).unwrap();
    // Written after the checkpoint: not part of it.
    src.append("t", &batch("late", 0, 1)).unwrap();

    let dst = RocksStorage::open(&d.path().join("dst"), RocksOptions::default()).unwrap();
    dst.append("t", &batch("stale", 0, 50)).unwrap();
    dst.append("t", &batch("a", 1000, 5)).unwrap(); // newer than the checkpoint's `a`
    dst.restore_from_checkpoint(&d.path().join("cp")).unwrap();

    assert_eq!(all(&dst, "a"), all(&src, "a"));
    assert_eq!(all(&dst, "a").len(), 307);
    assert_eq!(all(&dst, "b").len(), 3);
    assert!(all(&dst, "stale").is_empty(), "data from before the restore survived");
    assert!(all(&dst, "late").is_empty());
    assert_eq!(dst.num_series(), 2);
    let names = dst.label_values("t", "__name__", &MetaQuery::default()).unwrap();
    assert_eq!(names, vec!["a".to_string(), "b".to_string()]);
    // The head continues where the checkpoint ended: order checks hold.
    let r = dst.append("t", &batch("a", 306, 2)).unwrap();
    assert_eq!((r.accepted, r.duplicates), (2, 1));
    assert_eq!(dst.append("t", &batch("a", 5, 1)).unwrap().rejected.len(), 1);

    // And all of it survives a restart of the restored engine.
    drop(dst);
    let dst = RocksStorage::open(&d.path().join("dst"), RocksOptions::default()).unwrap();
    assert_eq!(all(&dst, "a").len(), 308);
    assert!(all(&dst, "stale").is_empty());
}

#[test]
fn restore_refuses_what_is_not_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let s = RocksStorage::open(&d.path().join("db"), RocksOptions::default()).unwrap();
    s.append("t", &batch("a", 0, 3)).unwrap();
    std::fs::create_dir(d.path().join("empty")).unwrap();
    assert!(s.restore_from_checkpoint(&d.path().join("empty")).is_err());
    assert!(s.restore_from_checkpoint(&d.path().join("missing")).is_err());
    assert_eq!(all(&s, "a").len(), 3, "a refused restore changed the data");
}

fn external(extra: &[&str]) -> RocksOptions {
    RocksOptions {
        external_log: true,
        extra_column_families: extra.iter().map(|s| s.to_string()).collect(),
        ..RocksOptions::default()
    }
}

/// With an external log (a raft log) the engine keeps no log of its own:
/// after a restart it holds exactly what was flushed, with the log position
/// the flush stored, and the caller replays its log from there.
#[test]
fn an_external_log_position_is_stored_with_the_flushed_state() {
    let d = tempfile::tempdir().unwrap();
    {
        let s = RocksStorage::open(d.path(), external(&["raft_log"])).unwrap();
        assert_eq!(s.log_position().unwrap(), None);
        s.append("t", &batch("m", 0, 10)).unwrap();
        s.set_log_position(b"10".to_vec());
        s.flush().unwrap();
        s.append("t", &batch("m", 10, 5)).unwrap();
        s.append("t", &batch("other", 0, 3)).unwrap();
        s.set_log_position(b"12".to_vec());
        assert_eq!(all(&s, "m").len(), 15);
        s.db().put_cf(s.db().cf_handle("raft_log").unwrap(), b"k", b"v").unwrap();
    }
    let s = RocksStorage::open(d.path(), external(&["raft_log"])).unwrap();
    assert_eq!(s.log_position().unwrap().as_deref(), Some(&b"10"[..]));
    assert_eq!(all(&s, "m").len(), 10, "samples after the flush come back only by replaying the caller's log");
    // Replaying: what is already stored drops out, the rest is appended.
    let r = s.append("t", &batch("m", 9, 6)).unwrap();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (6, 1, 0));
    s.append("t", &batch("other", 0, 3)).unwrap();
    assert_eq!((all(&s, "m").len(), all(&s, "other").len()), (15, 3));
    assert_eq!(s.db().get_cf(s.db().cf_handle("raft_log").unwrap(), b"k").unwrap().as_deref(), Some(&b"v"[..]));

    // A database holding a caller's column family opens without naming it.
    drop(s);
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    assert!(s.db().cf_handle("raft_log").is_some());
}

/// A checkpoint leaves the caller's column families out; restoring it
/// brings the engine's data and the stored log position.
#[test]
fn a_checkpoint_leaves_the_callers_column_families_out() {
    let d = tempfile::tempdir().unwrap();
    let s = RocksStorage::open(&d.path().join("src"), external(&["raft_log"])).unwrap();
    s.append("t", &batch("m", 0, 20)).unwrap();
    let db = s.db();
    let raft = db.cf_handle("raft_log").unwrap();
    for i in 0..1000u32 {
        db.put_cf(raft, i.to_be_bytes(), [7u8; 512]).unwrap();
    }
    s.set_log_position(b"20".to_vec());
    s.flush().unwrap();
    s.checkpoint(&d.path().join("cp")).unwrap();
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), d.path().join("cp")).unwrap();
    assert!(!cfs.iter().any(|c| c == "raft_log"), "{cfs:?}");

    let dst = RocksStorage::open(&d.path().join("dst"), external(&["raft_log"])).unwrap();
    dst.append("t", &batch("stale", 0, 5)).unwrap();
    dst.restore_from_checkpoint(&d.path().join("cp")).unwrap();
    assert_eq!((all(&dst, "m").len(), all(&dst, "stale").len()), (20, 0));
    assert_eq!(dst.log_position().unwrap().as_deref(), Some(&b"20"[..]));
}
