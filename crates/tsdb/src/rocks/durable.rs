//! Group commit: writers wait until their write is on stable storage, and
//! concurrent writers share one sync of the database's write-ahead log.
//!
//! A writer writes to RocksDB without syncing, takes a ticket with
//! [`GroupSync::issue`] and calls [`GroupSync::wait`]. The first waiter
//! whose write is not yet covered becomes the leader: it notes how many
//! tickets were issued, runs one sync (`fdatasync` of RocksDB's log, which
//! is sequential, so it covers every write that returned before it began)
//! and wakes everyone whose ticket it covered. Writers that arrive while a
//! sync runs wait for the next one, which covers all of them.
//!
//! A failed sync leaves it unknown which writes reached the disk, and a
//! retried sync can report success for data the kernel already dropped.
//! So a failure poisons the log: every later wait fails with the same error
//! until the process restarts and recovers from what is on disk. Nothing
//! unsynced is ever acknowledged.
//!
//! This module never touches RocksDB itself: the sync is a function given
//! to it, so tests can hold it or make it fail.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

/// Makes everything written so far durable, or says why it could not.
pub type SyncFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs before every sync of the log, for fault-injection tests: it may
/// block (a slow disk) or fail (an I/O error, and the sync then fails).
#[derive(Clone)]
pub struct SyncHook(pub std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl fmt::Debug for SyncHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncHook")
    }
}

/// See the module overview.
pub struct GroupSync {
    enabled: bool,
    sync: SyncFn,
    state: Mutex<State>,
    done: Condvar,
    syncs: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Tickets handed out: writes that have reached RocksDB's log.
    issued: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    /// A sync is running (its leader does not hold the lock meanwhile).
    syncing: bool,
    /// Why a sync failed; set once, for good.
    failed: Option<String>,
}

/// A write that is not (or no longer can be made) durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "syncing the write-ahead log failed, so writes since the last sync are not acknowledged: {0}; restart the process to recover from what is on disk"
)]
pub struct SyncFailed(pub String);

impl GroupSync {
    /// `enabled` false acknowledges at once (no sync: a killed process
    /// loses nothing, a power loss may lose acknowledged writes).
    pub fn new(enabled: bool, sync: SyncFn) -> Self {
        Self { enabled, sync, state: Mutex::new(State::default()), done: Condvar::new(), syncs: AtomicU64::new(0) }
    }

    /// Whether waits sync at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A ticket for a write that has just returned from RocksDB.
    pub fn issue(&self) -> u64 {
        let mut st = self.state.lock();
        st.issued += 1;
        st.issued
    }

    /// A ticket covering every write issued so far, for a caller that wrote
    /// nothing but answers for data others wrote (a duplicate sample).
    pub fn current(&self) -> u64 {
        self.state.lock().issued
    }

    /// Returns once `ticket` is durable; see the module overview.
    pub fn wait(&self, ticket: u64) -> Result<(), SyncFailed> {
        if !self.enabled {
            return Ok(());
        }
        let mut st = self.state.lock();
        loop {
            if let Some(why) = &st.failed {
                return Err(SyncFailed(why.clone()));
            }
            if st.synced >= ticket {
                return Ok(());
            }
            if st.syncing {
                self.done.wait(&mut st);
                continue;
            }
            st.syncing = true;
            let target = st.issued;
            drop(st);
            let res = (self.sync)();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            st = self.state.lock();
            st.syncing = false;
            match res {
                Ok(()) => st.synced = st.synced.max(target),
                Err(why) => st.failed = Some(why),
            }
            self.done.notify_all();
        }
    }

    /// Syncs run so far (each may have covered many writes).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for GroupSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSync").field("enabled", &self.enabled).field("syncs", &self.syncs()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A sync that blocks until the test lets it go, and counts its runs.
    fn held() -> (Arc<GroupSync>, mpsc::SyncSender<Result<(), String>>) {
        let (tx, rx) = mpsc::sync_channel::<Result<(), String>>(16);
        let rx = Mutex::new(rx);
        let gs = GroupSync::new(true, Box::new(move || rx.lock().recv().unwrap_or_else(|_| Err("closed".into()))));
        (Arc::new(gs), tx)
    }

    #[test]
    fn no_acknowledgement_before_the_sync_completes() {
        let (gs, release) = held();
        let (done_tx, done_rx) = mpsc::channel();
        let g = gs.clone();
        std::thread::spawn(move || {
            let t = g.issue();
            done_tx.send(g.wait(t)).ok();
        });
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err(), "acknowledged while the sync was held");
        release.send(Ok(())).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(()));
        assert_eq!(gs.syncs(), 1);
    }

    #[test]
    fn a_failed_sync_fails_its_writers_and_every_later_one() {
        let (gs, release) = held();
        let t = gs.issue();
        release.send(Err("EIO".into())).unwrap();
        assert_eq!(gs.wait(t), Err(SyncFailed("EIO".into())));
        let t2 = gs.issue();
        release.send(Ok(())).unwrap();
        assert_eq!(gs.wait(t2), Err(SyncFailed("EIO".into())), "a later sync must not acknowledge after a failure");
        assert_eq!(gs.wait(gs.current()), Err(SyncFailed("EIO".into())));
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let (gs, release) = held();
        // The first writer's sync is held; eight more arrive meanwhile and
        // must all be covered by the one sync after it.
        let first = gs.issue();
        let g = gs.clone();
        let leader = std::thread::spawn(move || g.wait(first));
        while !gs.state.lock().syncing {
            std::thread::yield_now();
        }
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let g = gs.clone();
                let t = g.issue();
                std::thread::spawn(move || g.wait(t))
            })
            .collect();
        release.send(Ok(())).unwrap();
        release.send(Ok(())).unwrap();
        assert_eq!(leader.join().unwrap(), Ok(()));
        for w in writers {
            assert_eq!(w.join().unwrap(), Ok(()));
        }
        assert_eq!(gs.syncs(), 2, "nine writers, one sync held plus one for all who came during it");
    }

    #[test]
    fn disabled_acknowledges_without_syncing() {
        let gs = GroupSync::new(false, Box::new(|| Err("must not run".into())));
        let t = gs.issue();
        assert_eq!(gs.wait(t), Ok(()));
        assert_eq!(gs.syncs(), 0);
    }

    #[test]
    fn a_ticket_already_covered_needs_no_sync() {
        let (gs, release) = held();
        let t = gs.issue();
        release.send(Ok(())).unwrap();
        gs.wait(t).unwrap();
        gs.wait(t).unwrap();
        gs.wait(gs.current()).unwrap();
        assert_eq!(gs.syncs(), 1);
    }
}
