/// Errors of the RocksDB engine: RocksDB's own, and those the storage
/// contract names (corrupt data, a foreign data directory, i/o). Callers
/// of the [`pharos_storage::Storage`] methods get them as
/// [`pharos_storage::Error`] (RocksDB's as its `Engine` variant).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    Storage(#[from] pharos_storage::Error),
    #[error(transparent)]
    Sync(#[from] crate::rocks::SyncFailed),
}

impl From<Error> for pharos_storage::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Rocks(e) => pharos_storage::Error::Engine { engine: "rocksdb", source: Box::new(e) },
            Error::Sync(e) => pharos_storage::Error::Engine { engine: "rocksdb", source: Box::new(e) },
            Error::Storage(e) => e,
        }
    }
}

/// Data on disk that does not decode.
pub(crate) fn corrupt(what: impl Into<String>) -> Error {
    Error::Storage(pharos_storage::Error::Corrupt(what.into()))
}
