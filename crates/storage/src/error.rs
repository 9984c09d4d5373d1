use std::path::PathBuf;

/// Errors of a storage engine, as the contract reports them. An engine's
/// own failures (RocksDB's, say) arrive as [`Error::Engine`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data directory {path} was not written by Pharos ({why}); choose an empty or Pharos data directory")]
    ForeignDataDir { path: PathBuf, why: String },
    #[error("corrupt data on disk: {0}")]
    Corrupt(String),
    #[error("i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A failure of the engine underneath, named by `engine` ("rocksdb").
    #[error("{engine}: {source}")]
    Engine { engine: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}
