use std::path::PathBuf;

/// Errors of the storage engines.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("data directory {path} was not written by Pharos ({why}); choose an empty or Pharos data directory")]
    ForeignDataDir { path: PathBuf, why: String },
    #[error("corrupt data on disk: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sync(#[from] crate::rocks::SyncFailed),
    #[error("i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}
