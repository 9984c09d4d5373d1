//! The raft log and raft state of one replica, in RocksDB.
//!
//! Two column families of the ingester's own database (the TSDB's, opened
//! with [`COLUMN_FAMILIES`] as extra column families): `raft_log` maps a
//! log index (u64 big endian) to the bincode-encoded entry; `raft_state`
//! holds the vote, the committed and purged log ids, the current snapshot's
//! record and a restore in progress. The raft log is the TSDB's write-ahead
//! log: the TSDB keeps none of its own (see [`crate::state_machine`]).
//! Every RocksDB call runs on the blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use pharos_tsdb::GroupSync;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

pub(crate) const CF_LOG: &str = "raft_log";
pub(crate) const CF_STATE: &str = "raft_state";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_PURGED: &[u8] = b"purged";
/// The current snapshot: its metadata and directory name.
pub(crate) const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// A snapshot restore in progress: its metadata and unpacked directory.
pub(crate) const KEY_RESTORING: &[u8] = b"restoring";

/// The column families the raft log and state live in.
pub const COLUMN_FAMILIES: [&str; 2] = [CF_LOG, CF_STATE];

/// The replica's raft column families, shared by the log store and the
/// state machine.
#[derive(Clone)]
pub struct RaftDb {
    pub(crate) db: Arc<DB>,
    /// The database's group commit: a durable write returns once synced.
    pub(crate) durable: Arc<GroupSync>,
    /// Index of the newest committed entry this replica knows of, for status.
    pub(crate) committed: Arc<AtomicU64>,
}

impl RaftDb {
    /// The raft column families of `db` (opened with [`COLUMN_FAMILIES`]).
    pub fn new(db: Arc<DB>, durable: Arc<GroupSync>) -> Result<Self, Error> {
        let me = Self { db, durable, committed: Arc::new(AtomicU64::new(0)) };
        if let Some(name) = COLUMN_FAMILIES.iter().find(|n| me.db.cf_handle(n).is_none()) {
            return Err(Error::RaftStorage(format!(
                "the TSDB's database was opened without the raft column family {name}"
            )));
        }
        if let Some(c) = me.get::<Option<LogId>>(KEY_COMMITTED)?.flatten() {
            me.committed.store(c.index, Ordering::Relaxed);
        }
        Ok(me)
    }

    /// Whether this replica has never been part of a raft group.
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.get::<Vote<NodeId>>(KEY_VOTE)?.is_none()
            && self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::Start).next().is_none())
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, Error> {
        self.db.cf_handle(name).ok_or_else(|| Error::RaftStorage(format!("column family {name} missing")))
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Error> {
        match self.db.get_cf(self.cf(CF_STATE)?, key)? {
            None => Ok(None),
            Some(v) => bincode::deserialize(&v)
                .map(Some)
                .map_err(|e| Error::RaftStorage(format!("raft state {}: {e}", String::from_utf8_lossy(key)))),
        }
    }

    pub(crate) fn put<T: Serialize>(&self, batch: &mut WriteBatch, key: &[u8], value: &T) -> Result<(), Error> {
        let v = bincode::serialize(value).map_err(|e| Error::RaftStorage(e.to_string()))?;
        batch.put_cf(self.cf(CF_STATE)?, key, v);
        Ok(())
    }

    /// Writes `batch`; a `durable` write returns only once it is on stable
    /// storage (one sync shared with the TSDB's other writers, unless the
    /// TSDB was opened without syncs).
    pub(crate) fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), Error> {
        self.db.write(batch)?;
        if durable {
            self.durable
                .wait(self.durable.issue())
                .map_err(|e| pharos_storage::Error::from(pharos_tsdb::Error::from(e)))?;
        }
        Ok(())
    }

    fn entries(&self, start: u64, end: Bound<u64>) -> Result<Vec<Entry>, Error> {
        let cf = self.cf(CF_LOG)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&start.to_be_bytes(), Direction::Forward)) {
            let (k, v) = item?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::RaftStorage("log key".into()))?);
            let past = match end {
                Bound::Included(e) => idx > e,
                Bound::Excluded(e) => idx >= e,
                Bound::Unbounded => false,
            };
            if past {
                break;
            }
            out.push(bincode::deserialize(&v).map_err(|e| Error::RaftStorage(format!("log entry {idx}: {e}")))?);
        }
        Ok(out)
    }

    fn last_entry(&self) -> Result<Option<Entry>, Error> {
        match self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item?;
                Ok(Some(bincode::deserialize(&v).map_err(|e| Error::RaftStorage(format!("last log entry: {e}")))?))
            }
        }
    }
}

/// Runs blocking RocksDB work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::RaftStorage(format!("storage task failed: {e}")))?
}

fn read_err(e: Error) -> StorageError {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_err(e: Error) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

/// openraft's log storage over a [`RaftDb`].
#[derive(Clone)]
pub struct LogStore {
    db: RaftDb,
}

impl LogStore {
    pub fn new(db: RaftDb) -> Self {
        Self { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = range.end_bound().cloned();
        let db = self.db.clone();
        blocking(move || db.entries(start, end)).await.map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let purged: Option<LogId> = db.get(KEY_PURGED)?;
            let last = db.last_entry()?.map(|e| e.log_id).or(purged);
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let (db, vote) = (self.db.clone(), *vote);
        blocking(move || {
            let mut b = WriteBatch::default();
            db.put(&mut b, KEY_VOTE, &vote)?;
            db.write(b, true)
        })
        .await
        .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let db = self.db.clone();
        blocking(move || db.get(KEY_VOTE)).await.map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            self.db.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        let db = self.db.clone();
        blocking(move || {
            let mut b = WriteBatch::default();
            db.put(&mut b, KEY_COMMITTED, &committed)?;
            db.write(b, false)
        })
        .await
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        blocking(move || Ok(db.get::<Option<LogId>>(KEY_COMMITTED)?.flatten())).await.map_err(read_err)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let res = blocking(move || {
            let cf = db.cf(CF_LOG)?;
            let mut b = WriteBatch::default();
            for e in &entries {
                let v = bincode::serialize(e).map_err(|x| Error::RaftStorage(x.to_string()))?;
                b.put_cf(cf, e.log_id.index.to_be_bytes(), v);
            }
            // openraft counts the entries as persisted (a vote towards
            // committing them) once the callback runs: only after the sync.
            db.write(b, true)
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let mut b = WriteBatch::default();
            b.delete_range_cf(db.cf(CF_LOG)?, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
            b.delete_cf(db.cf(CF_LOG)?, u64::MAX.to_be_bytes());
            db.write(b, true)
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let mut b = WriteBatch::default();
            db.put(&mut b, KEY_PURGED, &log_id)?;
            let (from, to) = (0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes());
            b.delete_range_cf(db.cf(CF_LOG)?, from, to);
            db.write(b, false)?;
            // Table files wholly within the purged range go now, not at
            // some later compaction.
            Ok(db.db.delete_file_in_range_cf(db.cf(CF_LOG)?, from, log_id.index.to_be_bytes())?)
        })
        .await
        .map_err(write_err)
    }
}
