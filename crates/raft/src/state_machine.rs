//! The state machine: committed entries applied to the TSDB, and snapshots
//! of the TSDB.
//!
//! Applying a [`Request`] appends each of its writes to the TSDB, in log
//! order, and answers one [`WriteOutcome`] per write; then the last applied
//! log id and the membership become the TSDB's log position
//! ([`SnapshotStorage::set_log_position`]).
//!
//! The raft log is the TSDB's write-ahead log: the TSDB (opened with
//! `external_log`) writes no log record of its own, and every TSDB flush
//! stores the position its flushed state covers, atomically with it. After a
//! restart [`RaftStateMachine::applied_state`] answers that stored position,
//! so openraft applies the committed entries after it again and the head is
//! rebuilt from the raft log. Entries applied before the crash are applied
//! twice: their samples are then exact duplicates (or older than what is on
//! disk), which the TSDB drops, so applying is idempotent. The log is purged
//! only up to a snapshot, and a snapshot is taken right after a flush, so
//! nothing unflushed is ever purged.
//!
//! Snapshots (policy: every `ReplicaOptions::snapshot_every` entries):
//!
//! - Building: [`RaftStateMachine::get_snapshot_builder`] runs between two
//!   applies, so the TSDB checkpoint it takes there
//!   ([`SnapshotStorage::checkpoint`]) holds exactly the state through the
//!   last applied log id; the builder then only publishes it as the current
//!   snapshot ([`crate::snapshot_dir`]). Once a snapshot exists openraft
//!   purges the log up to it, keeping `ReplicaOptions::log_keep` entries
//!   for followers that are only a little behind.
//! - Sending: a follower that needs purged entries gets the snapshot as
//!   the archive stream of its checkpoint ([`crate::archive`]), in chunks.
//! - Installing: the received archive is unpacked, the TSDB's contents are
//!   replaced with it ([`SnapshotStorage::restore_from_checkpoint`]), and the
//!   snapshot's last log id and membership are recorded as applied, in the
//!   same raft-database write that makes it the current snapshot. A restart
//!   in the middle of a restore finishes it first (the `restoring` record).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use rocksdb::WriteBatch;
use tokio::io::AsyncWriteExt;

use crate::Error;
use crate::archive;
use crate::snapshot::{ArchiveReader, SnapshotData, SnapshotStorage};
use crate::snapshot_dir::{SnapshotDir, StoredSnapshot};
use crate::store::{CF_STATE, KEY_RESTORING, RaftDb, blocking};
use crate::types::{Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Counters of the snapshots a replica built and installed.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    pub built: AtomicU64,
    pub installed: AtomicU64,
    /// Milliseconds the newest install took (unpack and restore).
    pub last_install_ms: AtomicU64,
    /// Bytes of the newest snapshot received.
    pub last_received_bytes: AtomicU64,
}

pub struct StateMachine {
    db: RaftDb,
    tsdb: Arc<dyn SnapshotStorage>,
    snapshots: Arc<SnapshotDir>,
    stats: Arc<SnapshotStats>,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The file the snapshot being received is written to.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    /// Opens the state machine over `tsdb` with its snapshots in
    /// `snapshot_root`, finishing a restore a crash interrupted.
    pub async fn open(
        db: RaftDb,
        tsdb: Arc<dyn SnapshotStorage>,
        snapshot_root: PathBuf,
        stats: Arc<SnapshotStats>,
    ) -> Result<Self, Error> {
        let (db2, tsdb2) = (db.clone(), tsdb.clone());
        let (snapshots, applied, membership) = blocking(move || {
            let snapshots = SnapshotDir::open(&snapshot_root, db2.clone())?;
            let restoring = db2.get::<(SnapshotMeta, String)>(KEY_RESTORING)?;
            let keep = restoring.as_ref().map(|(_, name)| snapshot_root.join(name));
            snapshots.remove_leftovers(keep.as_deref())?;
            if let (Some((meta, _)), Some(dir)) = (restoring, keep) {
                tracing::info!(snapshot = %meta.snapshot_id, "finishing a snapshot restore interrupted by a restart");
                finish_restore(&db2, &*tsdb2, &snapshots, meta, &dir)?;
            }
            let (applied, membership) = match tsdb2.log_position()? {
                None => (None, StoredMembership::default()),
                Some(b) => decode_position(&b)?,
            };
            Ok((snapshots, applied, membership))
        })
        .await?;
        Ok(Self { db, tsdb, snapshots: Arc::new(snapshots), stats, applied, membership, receiving: None })
    }
}

fn sm_err(e: Error) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e)).into()
}

fn snapshot_err(meta: Option<&SnapshotMeta>, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(meta.map(SnapshotMeta::signature), AnyError::error(e.to_string())).into()
}

fn read_snapshot_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

/// The snapshot as openraft reads it (blocking: lists the files).
fn open_snapshot(stored: Arc<StoredSnapshot>) -> Result<Snapshot<TypeConfig>, Error> {
    let meta = stored.meta.clone();
    Ok(Snapshot { meta, snapshot: Box::new(SnapshotData::Reading(ArchiveReader::open(stored)?)) })
}

/// The TSDB's log position: the last applied log id and the membership.
fn encode_position(applied: Option<LogId>, membership: &StoredMembership) -> Result<Vec<u8>, Error> {
    bincode::serialize(&(applied, membership)).map_err(|e| Error::RaftStorage(format!("log position: {e}")))
}

fn decode_position(b: &[u8]) -> Result<(Option<LogId>, StoredMembership), Error> {
    bincode::deserialize(b).map_err(|e| Error::RaftStorage(format!("the TSDB's raft log position: {e}")))
}

/// Replaces the TSDB with the unpacked checkpoint `dir` and records it as
/// the current snapshot and as applied (blocking).
fn finish_restore(
    db: &RaftDb,
    tsdb: &dyn SnapshotStorage,
    snapshots: &SnapshotDir,
    meta: SnapshotMeta,
    dir: &Path,
) -> Result<Arc<StoredSnapshot>, Error> {
    tsdb.restore_from_checkpoint(dir)?;
    // The checkpoint stored its own position already; this makes sure.
    tsdb.set_log_position(encode_position(meta.last_log_id, &meta.last_membership)?);
    tsdb.flush()?;
    snapshots.publish(dir, meta, |b| {
        b.delete_cf(db.cf(CF_STATE)?, KEY_RESTORING);
        Ok(())
    })
}

/// Installs the snapshot received in file `archive` (blocking); returns
/// the bytes it unpacked to.
fn install(
    db: &RaftDb,
    tsdb: &dyn SnapshotStorage,
    snapshots: &SnapshotDir,
    meta: SnapshotMeta,
    archive: &Path,
) -> Result<u64, Error> {
    let dir = snapshots.new_path("restore", "");
    let unpacked = archive::unpack(archive, &dir);
    let removed = std::fs::remove_file(archive);
    let bytes = match unpacked {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    removed.map_err(|e| Error::RaftStorage(format!("{}: {e}", archive.display())))?;
    // From here on a restart finishes the restore (see `StateMachine::open`).
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut b = WriteBatch::default();
    db.put(&mut b, KEY_RESTORING, &(meta.clone(), name))?;
    db.write(b, true)?;
    finish_restore(db, tsdb, snapshots, meta, &dir)?;
    Ok(bytes)
}

/// Builds a snapshot from the checkpoint taken by
/// [`RaftStateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder {
    snapshots: Arc<SnapshotDir>,
    stats: Arc<SnapshotStats>,
    /// The checkpoint directory, or why it could not be taken.
    checkpoint: Result<PathBuf, String>,
    last: Option<LogId>,
    membership: StoredMembership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let dir = std::mem::replace(&mut self.checkpoint, Err("snapshot already built".into()))
            .map_err(|e| snapshot_err(None, format!("cannot take a TSDB checkpoint: {e}")))?;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let meta = SnapshotMeta {
            last_log_id: self.last,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{ms}", self.last.map_or(0, |l| l.index)),
        };
        let snapshots = self.snapshots.clone();
        let snapshot = blocking(move || open_snapshot(snapshots.publish(&dir, meta, |_| Ok(()))?))
            .await
            .map_err(|e| snapshot_err(None, e))?;
        self.stats.built.fetch_add(1, Ordering::Relaxed);
        tracing::info!(snapshot = %snapshot.meta.snapshot_id, "snapshot built");
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else { return Ok(Vec::new()) };
        let mut membership = self.membership.clone();
        for e in &entries {
            if let EntryPayload::Membership(m) = &e.payload {
                membership = StoredMembership::new(Some(e.log_id), m.clone());
            }
        }
        let position = encode_position(Some(last), &membership).map_err(sm_err)?;
        let tsdb = self.tsdb.clone();
        let responses = blocking(move || {
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let mut resp = Response::default();
                if let EntryPayload::Normal(req) = e.payload {
                    for w in &req.writes {
                        resp.outcomes.push(tsdb.append(&w.tenant, &w.to_batch())?.into());
                    }
                }
                out.push(resp);
            }
            tsdb.set_log_position(position);
            Ok(out)
        })
        .await
        .map_err(sm_err)?;
        self.applied = Some(last);
        self.membership = membership;
        Ok(responses)
    }

    /// Flushes the TSDB and takes its checkpoint now, between two applies
    /// (see the module overview); the builder only publishes it.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (tsdb, dir) = (self.tsdb.clone(), self.snapshots.new_path("building", ""));
        let checkpoint = blocking(move || {
            tsdb.flush()?;
            tsdb.checkpoint(&dir)?;
            Ok(dir)
        })
        .await
        .map_err(|e| e.to_string());
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
            stats: self.stats.clone(),
            checkpoint,
            last: self.applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        if let Some(old) = self.receiving.take() {
            let _ = tokio::fs::remove_file(&old).await;
        }
        let path = self.snapshots.new_path("incoming", ".part");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| snapshot_err(None, format!("{}: {e}", path.display())))?;
        self.receiving = Some(path);
        Ok(Box::new(SnapshotData::Receiving(file)))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<SnapshotData>) -> Result<(), StorageError> {
        let started = Instant::now();
        let archive =
            self.receiving.take().ok_or_else(|| snapshot_err(Some(meta), "no snapshot was being received"))?;
        match *snapshot {
            SnapshotData::Receiving(mut f) => {
                f.flush().await.map_err(|e| snapshot_err(Some(meta), e))?;
                f.sync_all().await.map_err(|e| snapshot_err(Some(meta), e))?;
            }
            SnapshotData::Reading(_) => return Err(snapshot_err(Some(meta), "a stored snapshot cannot be installed")),
        }
        let received = tokio::fs::metadata(&archive).await.map(|m| m.len()).unwrap_or(0);
        let (db, tsdb, snapshots, m) = (self.db.clone(), self.tsdb.clone(), self.snapshots.clone(), meta.clone());
        let bytes = blocking(move || install(&db, &*tsdb, &snapshots, m, &archive))
            .await
            .map_err(|e| snapshot_err(Some(meta), e))?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let took = started.elapsed();
        self.stats.installed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_install_ms.store(took.as_millis() as u64, Ordering::Relaxed);
        self.stats.last_received_bytes.store(received, Ordering::Relaxed);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            last_log_id = ?meta.last_log_id,
            received,
            unpacked = bytes,
            ms = took.as_millis() as u64,
            "snapshot installed: the TSDB now holds the snapshot's state"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(stored) = self.snapshots.current() else { return Ok(None) };
        blocking(move || open_snapshot(stored)).await.map(Some).map_err(read_snapshot_err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::{CommittedLeaderId, RaftSnapshotBuilder};
    use pharos_model::{Labels, Matcher, Sample};
    use pharos_storage::{SeriesSamples, Storage};
    use pharos_tsdb::{RocksOptions, RocksStorage};

    use super::*;

    fn write(tsdb: &RocksStorage, name: &str, n: i64) {
        let labels = Labels::from_pairs(&[("__name__", name)]);
        let samples = (0..n).map(|i| Sample::new(i * 1000, i as f64)).collect();
        tsdb.append("t", &[SeriesSamples { labels, samples }]).unwrap();
    }

    fn count(tsdb: &RocksStorage, name: &str) -> usize {
        let got = tsdb.select("t", &[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).unwrap();
        got.iter().map(|s| s.samples.len()).sum()
    }

    fn names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// A crash after the received snapshot was unpacked and recorded as
    /// being restored, before the TSDB held it: the next start finishes
    /// the restore, records the snapshot as applied and current, and clears
    /// what the crash left over.
    #[tokio::test]
    async fn a_restore_cut_short_by_a_crash_is_finished_at_start() {
        let d = tempfile::tempdir().unwrap();
        let src = RocksStorage::open(&d.path().join("src"), RocksOptions::default()).unwrap();
        write(&src, "wanted", 50);
        let root = d.path().join("raft").join("snapshots");
        std::fs::create_dir_all(&root).unwrap();
        src.checkpoint(&root.join("restore-1")).unwrap();
        std::fs::write(root.join("incoming-2.part"), b"half a snapshot").unwrap();
        let last = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let meta =
            SnapshotMeta { last_log_id: Some(last), last_membership: Default::default(), snapshot_id: "42-1".into() };
        let opts = RocksOptions {
            external_log: true,
            extra_column_families: crate::store::COLUMN_FAMILIES.map(String::from).to_vec(),
            ..RocksOptions::default()
        };
        let dst = Arc::new(RocksStorage::open(&d.path().join("dst"), opts).unwrap());
        write(&dst, "stale", 5);
        let db = RaftDb::new(dst.db(), dst.group_sync()).unwrap();
        let mut b = WriteBatch::default();
        db.put(&mut b, KEY_RESTORING, &(meta.clone(), "restore-1".to_string())).unwrap();
        db.write(b, true).unwrap();

        let mut sm = StateMachine::open(db.clone(), dst.clone(), root.clone(), Default::default()).await.unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(last));
        assert_eq!((count(&dst, "wanted"), count(&dst, "stale")), (50, 0));
        assert!(db.get::<(SnapshotMeta, String)>(KEY_RESTORING).unwrap().is_none());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
        let left = names(&root);
        assert!(left.len() == 1 && left[0].starts_with("snap-"), "{left:?}");

        // One more entry applied; a snapshot built now replaces the
        // restored one, which goes once nothing reads it.
        let next = LogId::new(CommittedLeaderId::new(3, 1), 43);
        let more = SeriesSamples {
            labels: Labels::from_pairs(&[("__name__", "more")]),
            samples: vec![Sample::new(1000, 1.0)],
        };
        let req = crate::Request { writes: vec![crate::Write::new("t", vec![more])] };
        sm.apply(vec![Entry { log_id: next, payload: EntryPayload::Normal(req) }]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let built = builder.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(next));
        assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, built.meta);
        drop((current, built));
        // The removal runs on the blocking pool.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while names(&root).len() > 1 {
            assert!(Instant::now() < deadline, "the replaced snapshot stays: {:?}", names(&root));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let after = names(&root);
        assert!(after.len() == 1 && after[0] != left[0], "{left:?} then {after:?}");
    }
}
