//! What a snapshot is to openraft, and what it needs of the TSDB.
//!
//! openraft 0.9 sends a snapshot in chunks read from its `SnapshotData`
//! (`AsyncRead + AsyncSeek`) and writes the chunks it receives into one
//! (`AsyncWrite + AsyncSeek`). [`SnapshotData`] is either side, never the
//! whole snapshot in memory:
//!
//! - [`SnapshotData::Reading`]: a stored snapshot (a checkpoint directory)
//!   read as the archive stream of [`crate::archive`], straight from its
//!   files, on the blocking pool;
//! - [`SnapshotData::Receiving`]: the archive stream being written to a file
//!   under `DATA_DIR/raft/snapshots`, unpacked when complete.
//!
//! [`SnapshotStorage`] is the TSDB side: a consistent checkpoint, replacing
//! everything with one, and the raft position its flushed state covers.

use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pharos_storage::Storage;
use pharos_tsdb::RocksStorage;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use crate::Error;
use crate::archive::Layout;
use crate::snapshot_dir::StoredSnapshot;

/// The TSDB a replica runs over: its database also holds the raft column
/// families, its write-ahead log is the raft log, and snapshots can be taken
/// of it and installed into it.
pub trait SnapshotStorage: Storage {
    /// A consistent copy of everything stored, in the new directory `dir`.
    fn checkpoint(&self, dir: &Path) -> Result<(), pharos_storage::Error>;
    /// Replaces everything stored with the checkpoint in `dir`.
    fn restore_from_checkpoint(&self, dir: &Path) -> Result<(), pharos_storage::Error>;
    /// The database, opened with the raft column families.
    fn db(&self) -> Arc<rocksdb::DB>;
    /// The database's group commit, which the raft log's appends wait on.
    fn group_sync(&self) -> Arc<pharos_tsdb::GroupSync>;
    /// The raft position (last applied log id and membership, encoded)
    /// that everything appended so far covers; the next flush stores it.
    fn set_log_position(&self, position: Vec<u8>);
    /// The position the last flush stored.
    fn log_position(&self) -> Result<Option<Vec<u8>>, pharos_storage::Error>;
}

impl SnapshotStorage for RocksStorage {
    fn checkpoint(&self, dir: &Path) -> Result<(), pharos_storage::Error> {
        Ok(RocksStorage::checkpoint(self, dir)?)
    }

    fn restore_from_checkpoint(&self, dir: &Path) -> Result<(), pharos_storage::Error> {
        Ok(RocksStorage::restore_from_checkpoint(self, dir)?)
    }

    fn db(&self) -> Arc<rocksdb::DB> {
        RocksStorage::db(self)
    }

    fn group_sync(&self) -> Arc<pharos_tsdb::GroupSync> {
        RocksStorage::group_sync(self)
    }

    fn set_log_position(&self, position: Vec<u8>) {
        RocksStorage::set_log_position(self, position)
    }

    fn log_position(&self) -> Result<Option<Vec<u8>>, pharos_storage::Error> {
        Ok(RocksStorage::log_position(self)?)
    }
}

/// openraft's snapshot data: see the module overview.
pub enum SnapshotData {
    Reading(ArchiveReader),
    Receiving(tokio::fs::File),
}

/// Bytes read from the files per blocking read, at least.
const MIN_READ: usize = 64 << 10;
/// And at most.
const MAX_READ: usize = 4 << 20;

/// Reads a stored snapshot as an archive stream. Holding the snapshot
/// keeps its directory on disk until the reader is dropped, even if a newer
/// snapshot replaces it meanwhile.
pub struct ArchiveReader {
    layout: Arc<Layout>,
    _snapshot: Arc<StoredSnapshot>,
    pos: u64,
    /// Bytes read ahead, and the stream offset they start at.
    buffered: Option<(u64, Vec<u8>)>,
    pending: Option<(u64, PendingRead)>,
}

/// A read of the files on the blocking pool.
type PendingRead = JoinHandle<Result<Vec<u8>, Error>>;

impl ArchiveReader {
    /// Lists the snapshot's files (blocking).
    pub fn open(snapshot: Arc<StoredSnapshot>) -> Result<Self, Error> {
        let layout = Arc::new(Layout::of_dir(&snapshot.dir)?);
        Ok(Self { layout, _snapshot: snapshot, pos: 0, buffered: None, pending: None })
    }

    /// Bytes of the whole stream.
    pub fn len(&self) -> u64 {
        self.layout.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl AsyncRead for ArchiveReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos >= this.layout.len() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some((at, data)) = &this.buffered
                && *at <= this.pos
                && this.pos < at + data.len() as u64
            {
                let from = (this.pos - at) as usize;
                let n = buf.remaining().min(data.len() - from);
                buf.put_slice(&data[from..from + n]);
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            match &mut this.pending {
                None => {
                    let (layout, at, want) = (this.layout.clone(), this.pos, buf.remaining().clamp(MIN_READ, MAX_READ));
                    this.pending = Some((at, tokio::task::spawn_blocking(move || layout.read_at(at, want))));
                }
                Some((at, handle)) => {
                    let at = *at;
                    let res = ready!(Pin::new(handle).poll(cx));
                    this.pending = None;
                    let data = res.map_err(io_error)?.map_err(io_error)?;
                    if data.is_empty() {
                        return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    this.buffered = Some((at, data));
                }
            }
        }
    }
}

impl AsyncSeek for ArchiveReader {
    fn start_seek(mut self: Pin<&mut Self>, to: SeekFrom) -> std::io::Result<()> {
        let (base, delta) = match to {
            SeekFrom::Start(n) => (0, i128::from(n)),
            SeekFrom::End(d) => (i128::from(self.layout.len()), i128::from(d)),
            SeekFrom::Current(d) => (i128::from(self.pos), i128::from(d)),
        };
        self.pos = u64::try_from(base + delta)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

fn read_only() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "a stored snapshot is read-only")
}

impl AsyncRead for SnapshotData {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Reading(r) => Pin::new(r).poll_read(cx, buf),
            SnapshotData::Receiving(f) => Pin::new(f).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotData::Reading(r) => Pin::new(r).start_seek(to),
            SnapshotData::Receiving(f) => Pin::new(f).start_seek(to),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Reading(r) => Pin::new(r).poll_complete(cx),
            SnapshotData::Receiving(f) => Pin::new(f).poll_complete(cx),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Reading(_) => Poll::Ready(Err(read_only())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Reading(_) => Poll::Ready(Ok(())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Reading(_) => Poll::Ready(Ok(())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_shutdown(cx),
        }
    }
}
