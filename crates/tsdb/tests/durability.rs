//! An append returns only after the write-ahead log is synced: a held sync
//! holds the acknowledgement, a failed sync fails the append (and every
//! later one: nothing unsynced is acknowledged after a failed sync).

#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pharos_model::{Labels, Sample};
use pharos_storage::{SeriesSamples, Storage};
use pharos_tsdb::{RocksOptions, RocksStorage, SyncHook};

fn batch(name: &str, t: i64) -> Vec<SeriesSamples> {
    vec![SeriesSamples {
        labels: Labels::from_pairs(&[("__name__", name), ("job", "j")]),
        samples: vec![Sample::new(t, 1.0)],
    }]
}

/// An engine whose log syncs each wait for a verdict from the test.
fn held_engine(dir: &std::path::Path) -> (Arc<RocksStorage>, mpsc::SyncSender<Result<(), String>>) {
    let (tx, rx) = mpsc::sync_channel::<Result<(), String>>(64);
    let rx = Mutex::new(rx);
    let hook = SyncHook(Arc::new(move || rx.lock().unwrap().recv().unwrap_or_else(|_| Err("test over".into()))));
    let opts = RocksOptions { sync_fault: Some(hook), ..Default::default() };
    (Arc::new(RocksStorage::open(dir, opts).unwrap()), tx)
}

#[test]
fn an_append_is_acknowledged_only_after_the_log_sync() {
    let d = tempfile::tempdir().unwrap();
    let (s, verdict) = held_engine(d.path());
    let (done_tx, done_rx) = mpsc::channel();
    let s2 = s.clone();
    std::thread::spawn(move || done_tx.send(s2.append("t", &batch("a", 1000)).map(|r| r.accepted)).ok());
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the append returned while its log sync was held"
    );
    verdict.send(Ok(())).unwrap();
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap(), 1);
    assert_eq!(s.group_sync().syncs(), 1);
}

#[test]
fn a_failed_sync_fails_the_append_and_every_later_one() {
    let d = tempfile::tempdir().unwrap();
    let (s, verdict) = held_engine(d.path());
    verdict.send(Err("injected EIO".into())).unwrap();
    let err = s.append("t", &batch("a", 1000)).unwrap_err().to_string();
    assert!(err.contains("syncing the write-ahead log failed") && err.contains("injected EIO"), "{err}");
    // A retry of the same sample (now a duplicate in the head) and a new
    // sample both fail: neither may be acknowledged without a sync.
    verdict.send(Ok(())).unwrap();
    assert!(s.append("t", &batch("a", 1000)).is_err());
    assert!(s.append("t", &batch("b", 1000)).is_err());
}

#[test]
fn every_sequential_append_is_synced() {
    let d = tempfile::tempdir().unwrap();
    let s = RocksStorage::open(d.path(), RocksOptions::default()).unwrap();
    for i in 0..100 {
        s.append("t", &batch("a", i * 1000)).unwrap();
    }
    // A duplicate stores nothing; it needs no sync of its own once the
    // sample it repeats is synced.
    s.append("t", &batch("a", 99_000)).unwrap();
    assert_eq!(s.group_sync().syncs(), 100);
}

#[test]
fn without_syncs_nothing_waits() {
    let d = tempfile::tempdir().unwrap();
    let hook = SyncHook(Arc::new(|| Err("must not run".into())));
    let opts = RocksOptions { sync_writes: false, sync_fault: Some(hook), ..Default::default() };
    let s = RocksStorage::open(d.path(), opts).unwrap();
    assert_eq!(s.append("t", &batch("a", 1000)).unwrap().accepted, 1);
    assert_eq!(s.group_sync().syncs(), 0);
}
