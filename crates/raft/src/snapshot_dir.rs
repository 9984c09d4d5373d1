//! The snapshots a replica keeps on disk, in `DATA_DIR/raft/snapshots`:
//!
//! ```text
//! snap-<n>/          the current snapshot: a TSDB checkpoint (the newest only)
//! building-<n>/      a checkpoint being taken for a new snapshot
//! incoming-<n>.part  an archive being received from the leader
//! restore-<n>/       a received archive unpacked, being restored into the TSDB
//! ```
//!
//! The current snapshot's metadata (last log id, membership, id) and its
//! directory name are the `snapshot` key of the raft database's state, so
//! the record and what it names change in one step: the directory is
//! renamed into place first, then the record written. A snapshot replaced
//! by a newer one is deleted once nothing reads it any more. At start,
//! whatever the record does not name is left over from a crash and removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rocksdb::WriteBatch;

use crate::Error;
use crate::store::{KEY_SNAPSHOT, RaftDb};
use crate::types::SnapshotMeta;

/// One snapshot on disk.
#[derive(Debug)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    /// Its checkpoint directory.
    pub dir: PathBuf,
    /// Set once a newer snapshot replaced it: the directory goes with the
    /// last reference.
    retired: AtomicBool,
}

impl Drop for StoredSnapshot {
    fn drop(&mut self) {
        if !self.retired.load(Ordering::Relaxed) {
            return;
        }
        let dir = std::mem::take(&mut self.dir);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a replaced snapshot");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The record in the raft database: metadata and directory name.
type Record = (SnapshotMeta, String);

/// The snapshot directory of one replica. Its methods do blocking I/O.
pub struct SnapshotDir {
    root: PathBuf,
    db: RaftDb,
    current: Mutex<Option<Arc<StoredSnapshot>>>,
    seq: AtomicU64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::RaftStorage(format!("{}: {e}", path.display()))
}

impl SnapshotDir {
    /// Opens `root` (created if missing) and the snapshot its record names.
    pub fn open(root: &Path, db: RaftDb) -> Result<Self, Error> {
        std::fs::create_dir_all(root).map_err(|e| io_err(root, e))?;
        let current = match db.get::<Record>(KEY_SNAPSHOT)? {
            Some((meta, name)) if root.join(&name).is_dir() => {
                Some(Arc::new(StoredSnapshot { meta, dir: root.join(name), retired: AtomicBool::new(false) }))
            }
            Some((meta, name)) => {
                tracing::warn!(snapshot = %meta.snapshot_id, dir = %name, "the recorded snapshot is missing; dropping the record");
                let mut b = WriteBatch::default();
                b.delete_cf(db.cf(crate::store::CF_STATE)?, KEY_SNAPSHOT);
                db.write(b, true)?;
                None
            }
            None => None,
        };
        Ok(Self { root: root.to_path_buf(), db, current: Mutex::new(current), seq: AtomicU64::new(0) })
    }

    /// A fresh path in the directory: `<prefix>-<n><suffix>`.
    pub fn new_path(&self, prefix: &str, suffix: &str) -> PathBuf {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("{prefix}-{ms}-{n}{suffix}"))
    }

    pub fn current(&self) -> Option<Arc<StoredSnapshot>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes the checkpoint directory `from` the current snapshot, described
    /// by `meta`; `more` adds writes to the same raft-database batch. A
    /// snapshot not newer than the current one is discarded instead (the
    /// writes of `more` still happen). Returns the current snapshot.
    pub fn publish(
        &self,
        from: &Path,
        meta: SnapshotMeta,
        more: impl FnOnce(&mut WriteBatch) -> Result<(), Error>,
    ) -> Result<Arc<StoredSnapshot>, Error> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut b = WriteBatch::default();
        more(&mut b)?;
        if let Some(cur) = current.as_ref().filter(|c| c.meta.last_log_id >= meta.last_log_id) {
            let cur = cur.clone();
            self.db.write(b, true)?;
            std::fs::remove_dir_all(from).map_err(|e| io_err(from, e))?;
            return Ok(cur);
        }
        let dir = self.new_path("snap", "");
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::rename(from, &dir).map_err(|e| io_err(from, e))?;
        std::fs::File::open(&self.root).and_then(|d| d.sync_all()).map_err(|e| io_err(&self.root, e))?;
        self.db.put(&mut b, KEY_SNAPSHOT, &(meta.clone(), name))?;
        self.db.write(b, true)?;
        let new = Arc::new(StoredSnapshot { meta, dir, retired: AtomicBool::new(false) });
        if let Some(old) = current.replace(new.clone()) {
            old.retired.store(true, Ordering::Relaxed);
        }
        Ok(new)
    }

    /// Removes everything but the current snapshot and `keep`.
    pub fn remove_leftovers(&self, keep: Option<&Path>) -> Result<(), Error> {
        let current = self.current().map(|c| c.dir.clone());
        for e in std::fs::read_dir(&self.root).map_err(|e| io_err(&self.root, e))? {
            let path = e.map_err(|e| io_err(&self.root, e))?.path();
            if Some(&path) == current.as_ref() || Some(path.as_path()) == keep {
                continue;
            }
            tracing::info!(path = %path.display(), "removing a snapshot left over");
            let res = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            res.map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }
}
