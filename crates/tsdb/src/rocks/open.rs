//! Opening the engine: the data directory must be empty or Pharos's own
//! (format marker and column families checked before anything is
//! written), then the head is rebuilt (`recovery.rs`). Also the small
//! accessors of what `open` set up: column families, the database for a
//! caller's own keys, the external log position.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use pharos_storage::Error as StorageError;
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options};

use super::durable::{GroupSync, SyncFn, SyncHook};
use super::options::cf_options;
use super::{CF_META, CF_SERIES, CFS, FORMAT, FORMAT_KEY, Head, LOG_POSITION_KEY, RocksOptions, RocksStorage, Stats};
use crate::Error;
use crate::error::corrupt;

pub(super) fn check_data_dir(path: &Path) -> Result<(), Error> {
    let io = |source| Error::from(StorageError::Io { path: path.to_path_buf(), source });
    if !path.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path).map_err(io)?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !path.join("CURRENT").exists() {
        return Err(foreign(path, "it is not empty and holds no RocksDB database"));
    }
    let cfs = DB::list_cf(&Options::default(), path)?;
    if let Some(missing) = CFS.iter().find(|cf| !cfs.iter().any(|c| c == *cf)) {
        return Err(foreign(path, format!("a RocksDB database without the {missing:?} column family")));
    }
    Ok(())
}

impl RocksStorage {
    /// Opens (or creates) the database in `path`, then rebuilds the head.
    pub fn open(path: &Path, opts: RocksOptions) -> Result<Self, Error> {
        check_data_dir(path)?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        // Memtables of all column families together, and RocksDB's own log.
        db_opts.set_db_write_buffer_size(256 << 20);
        db_opts.set_keep_log_file_num(2);
        db_opts.set_max_log_file_size(1 << 20);
        let cache = rocksdb::Cache::new_lru_cache(64 << 20);
        // Every column family the database has must be opened: a caller's
        // (see `extra_column_families`) too, even if this one asks for none.
        let mut extra = opts.extra_column_families.clone();
        if path.join("CURRENT").exists() {
            for name in DB::list_cf(&Options::default(), path)? {
                if name != "default" && !CFS.contains(&name.as_str()) && !extra.contains(&name) {
                    extra.push(name);
                }
            }
        }
        let cfs = CFS
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, &cache)))
            .chain(extra.iter().map(|n| ColumnFamilyDescriptor::new(n, Options::default())));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        let meta = cf(&db, CF_META)?;
        match db.get_cf(meta, FORMAT_KEY)? {
            None => {
                if db.iterator_cf(cf(&db, CF_SERIES)?, IteratorMode::Start).next().is_some() {
                    return Err(foreign(path, "no format marker"));
                }
                db.put_cf(meta, FORMAT_KEY, FORMAT)?;
            }
            Some(f) if f == FORMAT => {}
            Some(f) => {
                let why =
                    format!("format {:?}, expected {:?}", String::from_utf8_lossy(&f), String::from_utf8_lossy(FORMAT));
                return Err(foreign(path, why));
            }
        }
        let db = Arc::new(db);
        let durable = Arc::new(GroupSync::new(opts.sync_writes, log_sync(db.clone(), opts.sync_fault.clone())));
        let storage = Self {
            db,
            durable,
            head: Mutex::new(Head::default()),
            log_position: Mutex::new(None),
            opts,
            path: path.to_path_buf(),
            stats: Stats::default(),
        };
        storage.recover()?;
        Ok(storage)
    }

    pub(super) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, Error> {
        cf(&self.db, name)
    }

    /// The database, for the caller's own column families
    /// ([`RocksOptions::extra_column_families`]).
    pub fn db(&self) -> Arc<DB> {
        self.db.clone()
    }

    /// The group commit of this database's log: a caller with its own log
    /// in the database ([`RocksOptions::external_log`]) waits on it before
    /// it calls a write durable.
    pub fn group_sync(&self) -> Arc<GroupSync> {
        self.durable.clone()
    }

    /// With [`RocksOptions::external_log`]: the caller's log position that
    /// the head now covers (opaque bytes), stored by the next flush. The
    /// caller sets it after appending everything up to that position.
    pub fn set_log_position(&self, position: Vec<u8>) {
        *self.log_position.lock() = Some(position);
    }

    /// The log position the last flush stored: replaying the caller's log
    /// after it restores everything appended since.
    pub fn log_position(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.db.get_cf(self.cf(CF_META)?, LOG_POSITION_KEY)?)
    }
}

/// The refusal of a data directory that is not Pharos's.
pub(super) fn foreign(path: &Path, why: impl Into<String>) -> Error {
    Error::from(StorageError::ForeignDataDir { path: path.to_path_buf(), why: why.into() })
}

pub(super) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, Error> {
    db.cf_handle(name).ok_or_else(|| corrupt(format!("column family {name} missing")))
}

/// The sync of the database's log: RocksDB's write-ahead log is written
/// in order, so syncing it makes every write that returned before durable.
fn log_sync(db: Arc<DB>, fault: Option<SyncHook>) -> SyncFn {
    Box::new(move || {
        if let Some(hook) = &fault {
            (hook.0)()?;
        }
        db.flush_wal(true).map_err(|e| e.to_string())
    })
}
