//! The RocksDB engine.
//!
//! Write path: [`RocksStorage::append`] decides per sample (pure
//! [`crate::classify`]), then writes the new series, their postings and one
//! write-ahead log record in ONE atomic RocksDB batch, and only then applies
//! the samples to the in-memory head (one open Gorilla chunk per series). A
//! chunk that reaches its target size is written to the `chunks` column
//! family and a new one is opened. [`RocksStorage::flush`] writes every open
//! chunk and trims the log; after a crash, [`RocksStorage::open`] reloads
//! the series table, reopens each series' last chunk and replays the log
//! (replayed samples already on disk are exact duplicates and drop out).
//!
//! Read path: for each time partition a query overlaps, matchers resolve
//! to series ids through that partition's postings; samples come from the
//! partition's chunks plus the open head chunk.
//!
//! Time partitions (2 h, see `keys.rs`) key both postings and chunks, and a
//! chunk never spans two of them, so retention drops whole partitions with
//! range deletes ([`RocksStorage::apply_retention`]).

mod durable;
mod keys;
mod metrics;
mod restore;
mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pharos_chunkenc::ChunkEncoder;
use pharos_model::{Labels, MatchOp, Matcher, Sample, Series};
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};

pub use self::durable::{GroupSync, SyncFailed, SyncHook};
use crate::check::{admit, reject_all};
use crate::{AppendResult, Error, RejectReason, Rejection, SeriesSamples, Storage, validate_labels};

const CF_META: &str = "meta";
const CF_SERIES: &str = "series";
const CF_POSTINGS: &str = "postings";
const CF_CHUNKS: &str = "chunks";
const CF_WAL: &str = "wal";
const CF_HEADS: &str = "heads";
const CFS: [&str; 6] = [CF_META, CF_SERIES, CF_POSTINGS, CF_CHUNKS, CF_WAL, CF_HEADS];
const FORMAT_KEY: &[u8] = b"format";
/// In `meta`: the caller's log position the flushed state covers
/// ([`RocksOptions::external_log`]).
const LOG_POSITION_KEY: &[u8] = b"log_position";
const FORMAT: &[u8] = b"pharos-tsdb/2";

/// Tuning of the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Sync the write-ahead log before an append returns (group commit:
    /// concurrent appends share one sync), so an acknowledged sample
    /// survives power loss, not only a killed process. On by default.
    /// With [`Self::external_log`] the caller syncs its own log through
    /// [`RocksStorage::group_sync`].
    pub sync_writes: bool,
    /// Fault injection for tests: runs before each sync of the log and may
    /// hold it or fail it.
    pub sync_fault: Option<SyncHook>,
    /// Samples per chunk before it is cut and written.
    pub chunk_samples: usize,
    /// Data older than this (relative to the wall clock) is rejected on
    /// append and dropped by [`RocksStorage::apply_retention`]. None keeps
    /// everything.
    pub retention_ms: Option<i64>,
    /// Active series a tenant may have; None for no limit.
    pub max_series_per_tenant: Option<usize>,
    /// Longest label name and value, in bytes.
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// The write-ahead log is the caller's: a replicated shard's raft log.
    /// Appends then write no log record of their own (every sample would be
    /// logged twice), [`RocksStorage::flush`] stores the caller's position
    /// in its log ([`RocksStorage::set_log_position`]) atomically with the
    /// flushed head, and after a restart the caller replays its log from
    /// [`RocksStorage::log_position`] on: samples appended after the last
    /// flush are not in the engine until then.
    pub external_log: bool,
    /// Column families opened in the same database for the caller's own
    /// keys (a replicated shard's raft log and state), reached through
    /// [`RocksStorage::db`]. They are left out of checkpoints and restores.
    pub extra_column_families: Vec<String>,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            sync_writes: true,
            sync_fault: None,
            chunk_samples: pharos_chunkenc::TARGET_SAMPLES,
            retention_ms: None,
            max_series_per_tenant: None,
            max_label_name_len: 1024,
            max_label_value_len: 4096,
            external_log: false,
            extra_column_families: Vec::new(),
        }
    }
}

/// Counters the engine keeps about itself, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub appended_samples: AtomicU64,
    pub duplicate_samples: AtomicU64,
    /// Rejected samples, one counter per [`RejectReason`] (see [`Stats::rejected`]).
    rejected: [AtomicU64; RejectReason::ALL.len()],
    pub retention_runs: AtomicU64,
    pub chunks_written: AtomicU64,
    pub flushes: AtomicU64,
}

struct MemSeries {
    tenant: Arc<str>,
    /// The canonical label encoding ([`Labels::encode`]): a fraction of the
    /// memory a decoded [`Labels`] takes, which matters at millions of series.
    labels: Box<[u8]>,
    /// The open chunk; its samples are on disk only if `dirty` is false.
    chunk: ChunkEncoder,
    dirty: bool,
    last: Option<Sample>,
    /// Newest partition whose postings name this series.
    indexed: Option<i64>,
}

impl MemSeries {
    fn labels(&self) -> Labels {
        // Only ever built from a valid encoding (checked when loaded).
        Labels::decode(&self.labels).unwrap_or_default()
    }
}

/// Hashes a `u64` key with one multiplication. The head's maps are keyed by
/// series ids (sequential) and label hashes (already xxh3): SipHash, std's
/// default, showed up at several percent of ingest CPU for nothing.
#[derive(Default, Clone, Copy)]
struct U64Hasher(u64);

impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<U64Hasher>>;

/// Series ids whose label hashes collide: almost always exactly one.
enum Ids {
    One(u64),
    /// A boxed slice (not a `Vec`) keeps every slot of the hash table small.
    Many(Box<[u64]>),
}

/// Whether `bytes` is a label encoding [`Labels::decode`] accepts, checked
/// without building the labels (restart reads millions of them).
fn valid_label_encoding(bytes: &[u8]) -> bool {
    let Some(body) = bytes.strip_suffix(&[keys::SEP]) else { return bytes.is_empty() };
    let mut parts = 0;
    for (i, part) in body.split(|b| *b == keys::SEP).enumerate() {
        if (i % 2 == 0 && part.is_empty()) || std::str::from_utf8(part).is_err() {
            return false;
        }
        parts += 1;
    }
    parts % 2 == 0
}

/// `tenant 0xff labels` into `buf`, and its hash ([`pharos_model::series_hash`]).
fn series_key(tenant: &str, labels: &Labels, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(keys::SEP);
    labels.encode_into(buf);
    xxhash_rust::xxh3::xxh3_64(buf)
}

#[derive(Default)]
struct Head {
    next_id: u64,
    next_seq: u64,
    by_hash: IdMap<Ids>,
    /// Boxed: a hash table keeps up to twice its length in empty slots,
    /// and a slot the size of a `MemSeries` (about 160 bytes) made those
    /// cost more than the series themselves at a million series.
    series: IdMap<Box<MemSeries>>,
    tenants: HashMap<String, Arc<str>>,
    series_per_tenant: HashMap<Arc<str>, usize>,
}

impl Head {
    /// The id of the series whose `tenant 0xff labels` encoding is `key`.
    fn lookup(&self, hash: u64, key: &[u8]) -> Option<u64> {
        let matches = |id: &u64| {
            self.series.get(id).is_some_and(|s| {
                key.len() == s.tenant.len() + 1 + s.labels.len()
                    && key.starts_with(s.tenant.as_bytes())
                    && key.ends_with(&s.labels)
            })
        };
        match self.by_hash.get(&hash)? {
            Ids::One(id) => Some(*id).filter(matches),
            Ids::Many(ids) => ids.iter().copied().find(matches),
        }
    }

    fn insert(&mut self, id: u64, tenant: &str, hash: u64, labels: Box<[u8]>) {
        let tenant = match self.tenants.get(tenant) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(tenant);
                self.tenants.insert(tenant.to_string(), t.clone());
                t
            }
        };
        match self.by_hash.get_mut(&hash) {
            None => {
                self.by_hash.insert(hash, Ids::One(id));
            }
            Some(Ids::One(other)) => {
                let other = *other;
                self.by_hash.insert(hash, Ids::Many(Box::new([other, id])));
            }
            Some(Ids::Many(ids)) => *ids = ids.iter().copied().chain([id]).collect(),
        }
        *self.series_per_tenant.entry(tenant.clone()).or_default() += 1;
        self.series.insert(
            id,
            Box::new(MemSeries { tenant, labels, chunk: ChunkEncoder::new(), dirty: false, last: None, indexed: None }),
        );
        self.next_id = self.next_id.max(id + 1);
    }

    fn remove(&mut self, id: u64) {
        let Some(s) = self.series.remove(&id) else { return };
        let hash = series_key(&s.tenant, &s.labels(), &mut Vec::new());
        let empty = match self.by_hash.get_mut(&hash) {
            Some(Ids::One(x)) => *x == id,
            Some(Ids::Many(ids)) => {
                *ids = ids.iter().copied().filter(|x| *x != id).collect();
                ids.is_empty()
            }
            None => false,
        };
        if empty {
            self.by_hash.remove(&hash);
        }
        if let Some(n) = self.series_per_tenant.get_mut(&s.tenant) {
            *n = n.saturating_sub(1);
        }
    }

    fn tenant_series(&self, tenant: &str) -> usize {
        self.series_per_tenant.get(tenant).copied().unwrap_or(0)
    }
}

/// Up to this many candidate series, a further equality matcher is checked
/// by point lookups rather than by reading its whole postings list.
const POINT_LOOKUP_MAX: usize = 256;

/// The RocksDB storage engine. See the module overview.
pub struct RocksStorage {
    db: Arc<DB>,
    head: Mutex<Head>,
    /// With [`RocksOptions::external_log`]: the caller's log position that
    /// the head covers, stored by the next flush.
    log_position: Mutex<Option<Vec<u8>>>,
    opts: RocksOptions,
    path: PathBuf,
    pub stats: Stats,
    /// Syncs of the database's log, shared by every writer to it.
    durable: Arc<GroupSync>,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage").field("path", &self.path).finish()
    }
}

fn check_data_dir(path: &Path) -> Result<(), Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    if !path.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path).map_err(io)?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !path.join("CURRENT").exists() {
        return Err(Error::ForeignDataDir {
            path: path.to_path_buf(),
            why: "it is not empty and holds no RocksDB database".into(),
        });
    }
    let cfs = DB::list_cf(&Options::default(), path)?;
    if let Some(missing) = CFS.iter().find(|cf| !cfs.iter().any(|c| c == *cf)) {
        return Err(Error::ForeignDataDir {
            path: path.to_path_buf(),
            why: format!("a RocksDB database without the {missing:?} column family"),
        });
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
                    return Err(Error::ForeignDataDir { path: path.to_path_buf(), why: "no format marker".into() });
                }
                db.put_cf(meta, FORMAT_KEY, FORMAT)?;
            }
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(Error::ForeignDataDir {
                    path: path.to_path_buf(),
                    why: format!(
                        "format {:?}, expected {:?}",
                        String::from_utf8_lossy(&f),
                        String::from_utf8_lossy(FORMAT)
                    ),
                });
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

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, Error> {
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

    /// Loads the series table and every series' last chunk, then replays the log.
    fn recover(&self) -> Result<(), Error> {
        self.load_head(&mut self.head.lock())
    }

    /// [`RocksStorage::recover`] into `head` (empty), whose lock the caller holds.
    fn load_head(&self, head: &mut Head) -> Result<(), Error> {
        for item in self.db.iterator_cf(self.cf(CF_SERIES)?, IteratorMode::Start) {
            let (k, v) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupt("series key".into()))?);
            let sep = v.iter().position(|b| *b == keys::SEP).ok_or_else(|| Error::Corrupt(format!("series {id}")))?;
            let tenant = std::str::from_utf8(&v[..sep]).map_err(|_| Error::Corrupt(format!("series {id} tenant")))?;
            let encoded = &v[sep + 1..];
            if !valid_label_encoding(encoded) {
                return Err(Error::Corrupt(format!("series {id} labels")));
            }
            // The value is `tenant 0xff labels`, exactly what the hash covers.
            head.insert(id, tenant, xxhash_rust::xxh3::xxh3_64(&v), encoded.into());
        }
        // The newest chunk of every series: one pass over the chunk keys
        // (values are read only for the winners).
        // The newest chunk of every series, named by `heads`: one read per
        // series, however long the history on disk.
        let chunks = self.cf(CF_CHUNKS)?;
        for item in self.db.iterator_cf(self.cf(CF_HEADS)?, IteratorMode::Start) {
            let (k, key) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupt("heads key".into()))?);
            let v = self
                .db
                .get_cf(chunks, &key)?
                .ok_or_else(|| Error::Corrupt(format!("chunk of series {id} vanished")))?;
            let (_, bytes) =
                keys::split_chunk_value(&v).ok_or_else(|| Error::Corrupt(format!("chunk of series {id}")))?;
            let enc = pharos_chunkenc::reopen_stored(bytes)
                .map_err(|e| Error::Corrupt(format!("chunk of series {id}: {e}")))?;
            if let Some(s) = head.series.get_mut(&id) {
                s.last = enc.last().map(|(t, v)| Sample::new(t, v));
                s.indexed = s.last.map(|l| keys::partition_of(l.t));
                if enc.len() < self.opts.chunk_samples {
                    s.chunk = enc;
                }
            }
        }
        let wal = self.cf(CF_WAL)?;
        let mut replayed = 0u64;
        let mut cut = WriteBatch::default();
        for item in self.db.iterator_cf(wal, IteratorMode::Start) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupt("wal key".into()))?);
            let record = wal::decode(&v).ok_or_else(|| Error::Corrupt(format!("wal record {seq}")))?;
            for (id, samples) in record {
                let Some(s) = head.series.get(&id) else {
                    return Err(Error::Corrupt(format!("wal record {seq} names unknown series {id}")));
                };
                let (fresh, _, _) = admit(&Labels::default(), s.last, &samples);
                replayed += fresh.len() as u64;
                self.index_partitions(head, id, &fresh, &mut cut)?;
                self.apply(head, id, &fresh, &mut cut)?;
            }
            head.next_seq = seq + 1;
        }
        self.db.write(cut)?;
        tracing::info!(path = %self.path.display(), series = head.series.len(), replayed, "tsdb opened");
        Ok(())
    }

    /// Puts a chunk into `batch` in its on-disk form
    /// ([`pharos_chunkenc::encode_stored`]), and names it the series'
    /// newest chunk in `heads`.
    fn write_chunk(&self, batch: &mut WriteBatch, id: u64, chunk: &ChunkEncoder) -> Result<(), Error> {
        if let (Some(min), Some(max)) = (chunk.min_t(), chunk.max_t()) {
            let stored = pharos_chunkenc::encode_stored(chunk.bytes())
                .map_err(|e| Error::Corrupt(format!("head chunk of series {id}: {e}")))?;
            let key = keys::chunk_key(id, min);
            batch.put_cf(self.cf(CF_CHUNKS)?, key, keys::chunk_value(max, &stored));
            batch.put_cf(self.cf(CF_HEADS)?, keys::series_key(id), key);
        }
        Ok(())
    }

    /// Appends already-admitted samples to a series' head chunk, cutting
    /// full chunks into `batch`.
    fn apply(&self, head: &mut Head, id: u64, samples: &[Sample], batch: &mut WriteBatch) -> Result<(), Error> {
        let Some(s) = head.series.get_mut(&id) else { return Ok(()) };
        for x in samples {
            // A chunk never spans two partitions, so retention can drop whole ones.
            if s.chunk.min_t().is_some_and(|m| keys::partition_of(m) != keys::partition_of(x.t)) {
                if s.dirty {
                    self.write_chunk(batch, id, &s.chunk)?;
                    self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
                }
                s.chunk = ChunkEncoder::new();
                s.dirty = false;
            }
            s.chunk.append(x.t, x.v).map_err(|e| Error::Corrupt(format!("head chunk of series {id}: {e}")))?;
            s.dirty = true;
            s.last = Some(*x);
            if s.chunk.len() >= self.opts.chunk_samples {
                self.write_chunk(batch, id, &s.chunk)?;
                s.chunk = ChunkEncoder::new();
                s.dirty = false;
                self.stats.chunks_written.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Writes the postings of series `id` for every partition `samples`
    /// reach beyond the newest one already indexed. Samples are in time
    /// order, so partitions only grow.
    fn index_partitions(
        &self,
        head: &mut Head,
        id: u64,
        samples: &[Sample],
        batch: &mut WriteBatch,
    ) -> Result<(), Error> {
        let postings = self.cf(CF_POSTINGS)?;
        let Some(s) = head.series.get_mut(&id) else { return Ok(()) };
        let mut key = Vec::with_capacity(128);
        for x in samples {
            let p = keys::partition_of(x.t);
            if s.indexed.is_some_and(|i| i >= p) {
                continue;
            }
            keys::posting_key_into(&mut key, &s.tenant, p, b"", b"", id);
            batch.put_cf(postings, &key, []);
            for (name, value) in keys::encoded_pairs(&s.labels) {
                keys::posting_key_into(&mut key, &s.tenant, p, name, value, id);
                batch.put_cf(postings, &key, []);
            }
            s.indexed = Some(p);
        }
        Ok(())
    }

    /// Sorted ids of the tenant's series that match every matcher, resolved
    /// from the postings index.
    fn resolve(&self, tenant: &str, partition: i64, matchers: &[Matcher]) -> Result<Vec<u64>, Error> {
        let mut result: Option<Vec<u64>> = None;
        // Equality first, the metric name first of all: usually the shortest
        // lists, so the broad ones (`job="x"`, every series) can be checked
        // by point lookups of the few candidates instead of being scanned.
        let mut narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
        narrowing.sort_by_key(|m| (m.op != MatchOp::Equal, m.name != "__name__"));
        for m in narrowing {
            let ids = match &result {
                Some(r) if m.op == MatchOp::Equal && r.len() <= POINT_LOOKUP_MAX => {
                    self.having_posting(tenant, partition, m, r)?
                }
                _ if m.op == MatchOp::Equal => self.postings(tenant, partition, &m.name, Some(&m.value), |_| true)?,
                _ => self.postings(tenant, partition, &m.name, None, |v| m.matches(v))?,
            };
            result = Some(match result {
                None => ids,
                Some(r) => intersect(&r, &ids),
            });
        }
        let mut result = match result {
            Some(r) => r,
            None => self.postings(tenant, partition, "", Some(""), |_| true)?,
        };
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let bad = self.postings(tenant, partition, &m.name, None, |v| !m.matches(v))?;
            result = subtract(&result, &bad);
        }
        Ok(result)
    }

    /// The ids among `candidates` (sorted) that have the posting of the
    /// equality matcher `m`, by one point lookup each.
    fn having_posting(&self, tenant: &str, partition: i64, m: &Matcher, candidates: &[u64]) -> Result<Vec<u64>, Error> {
        let cf = self.cf(CF_POSTINGS)?;
        let keys: Vec<Vec<u8>> = candidates
            .iter()
            .map(|id| {
                let mut k = Vec::new();
                keys::posting_key_into(&mut k, tenant, partition, m.name.as_bytes(), m.value.as_bytes(), *id);
                k
            })
            .collect();
        let found = self.db.batched_multi_get_cf(cf, &keys, true);
        let mut out = Vec::new();
        for (id, got) in candidates.iter().zip(found) {
            if got?.is_some() {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Sorted series ids of the postings of `name` (with exactly `value`, or
    /// any value passing `keep`).
    fn postings(
        &self,
        tenant: &str,
        partition: i64,
        name: &str,
        value: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<u64>, Error> {
        let name_prefix = keys::postings_prefix(tenant, partition, name, None);
        let prefix = keys::postings_prefix(tenant, partition, name, value);
        let mut ro = ReadOptions::default();
        ro.set_iterate_range(rocksdb::PrefixRange(prefix.as_slice()));
        let mut ids = Vec::new();
        let mut last: Option<(Vec<u8>, bool)> = None;
        for item in self.db.iterator_cf_opt(self.cf(CF_POSTINGS)?, ro, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, _) = item?;
            let rest = &k[name_prefix.len()..];
            let (v, id) = keys::split_posting(rest).ok_or_else(|| Error::Corrupt("posting key".into()))?;
            let ok = match &last {
                Some((lv, ok)) if lv.as_slice() == v => *ok,
                _ => {
                    let ok = std::str::from_utf8(v).is_ok_and(&keep);
                    last = Some((v.to_vec(), ok));
                    ok
                }
            };
            if ok {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The first partition in `from..=last` with postings of `tenant`.
    fn next_partition(&self, tenant: &str, from: i64, last: i64) -> Result<Option<i64>, Error> {
        if from > last {
            return Ok(None);
        }
        let start = keys::tenant_partition_prefix(tenant, from);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_POSTINGS)?);
        it.seek(&start);
        if let Some(k) = it.key() {
            let tenant_len = tenant.len() + 1;
            if k.len() >= tenant_len + 8 && k[..tenant.len()] == *tenant.as_bytes() && k[tenant.len()] == keys::SEP {
                let p =
                    keys::unflip(&k[tenant_len..tenant_len + 8]).ok_or_else(|| Error::Corrupt("posting key".into()))?;
                return Ok((p <= last).then_some(p));
            }
        }
        it.status()?;
        Ok(None)
    }

    /// Label sets of the tenant's series matching every matcher, from the
    /// series held in memory (every series within retention).
    fn matching_labels(&self, tenant: &str, matchers: &[Matcher]) -> Vec<Labels> {
        let head = self.head.lock();
        head.series
            .values()
            .filter(|s| &*s.tenant == tenant)
            .map(|s| s.labels())
            .filter(|labels| matchers.iter().all(|m| m.matches_labels(labels)))
            .collect()
    }

    /// Drops every partition wholly older than the retention period, and
    /// the series that have no samples left. Returns the series removed.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, Error> {
        let Some(retention) = self.opts.retention_ms else { return Ok(0) };
        let keep_from = keys::partition_of(now_ms.saturating_sub(retention));
        let min_t = keep_from.saturating_mul(keys::PARTITION_MS);
        let mut head = self.head.lock();
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(self.cf(CF_CHUNKS)?, keys::flip(i64::MIN), keys::flip(keep_from));
        let postings = self.cf(CF_POSTINGS)?;
        for tenant in head.tenants.keys() {
            wb.delete_range_cf(
                postings,
                keys::tenant_partition_prefix(tenant, i64::MIN),
                keys::tenant_partition_prefix(tenant, keep_from),
            );
        }
        let gone: Vec<u64> =
            head.series.iter().filter(|(_, s)| s.last.is_none_or(|l| l.t < min_t)).map(|(id, _)| *id).collect();
        let (series_cf, heads_cf) = (self.cf(CF_SERIES)?, self.cf(CF_HEADS)?);
        for id in &gone {
            wb.delete_cf(series_cf, keys::series_key(*id));
            wb.delete_cf(heads_cf, keys::series_key(*id));
        }
        self.db.write(wb)?;
        for id in &gone {
            head.remove(*id);
        }
        drop(head);
        self.stats.retention_runs.fetch_add(1, Ordering::Relaxed);
        if !gone.is_empty() {
            tracing::info!(series = gone.len(), keep_from_ms = min_t, "retention dropped old data");
        }
        Ok(gone.len())
    }

    fn check_labels(&self, labels: &Labels) -> Option<RejectReason> {
        if !validate_labels(labels) {
            return Some(RejectReason::InvalidLabels);
        }
        let too_long = labels
            .iter()
            .any(|l| l.name.len() > self.opts.max_label_name_len || l.value.len() > self.opts.max_label_value_len);
        too_long.then_some(RejectReason::LabelTooLong)
    }

    fn count(&self, res: &AppendResult) {
        let st = &self.stats;
        st.appended_samples.fetch_add(res.accepted - res.duplicates, Ordering::Relaxed);
        st.duplicate_samples.fetch_add(res.duplicates, Ordering::Relaxed);
        for r in &res.rejected {
            st.rejected(r.reason).fetch_add(r.count, Ordering::Relaxed);
        }
    }

    /// Active series held in memory.
    pub fn num_series(&self) -> usize {
        self.head.lock().series.len()
    }

    /// Open head chunks that hold samples (a pass over the head).
    pub fn head_chunks(&self) -> usize {
        self.head.lock().series.values().filter(|s| !s.chunk.is_empty()).count()
    }

    /// RocksDB's own figures, as `(metric name, help, value)`: write stalls,
    /// compaction backlog, memtables and level-0 files (summed over the
    /// column families where RocksDB keeps them per family).
    pub fn engine_figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        let db_int = |p: &str| self.db.property_int_value(p).ok().flatten().unwrap_or(0) as f64;
        let cf_sum = |p: &str| -> f64 {
            CFS.iter()
                .filter_map(|n| self.db.cf_handle(n))
                .filter_map(|cf| self.db.property_int_value_cf(cf, p).ok().flatten())
                .sum::<u64>() as f64
        };
        vec![
            (
                "pharos_rocksdb_write_stopped",
                "1 while RocksDB stops writes (too many memtables or level-0 files).",
                db_int("rocksdb.is-write-stopped"),
            ),
            (
                "pharos_rocksdb_delayed_write_rate_bytes",
                "Write rate RocksDB currently throttles to; 0 when writes are not delayed.",
                db_int("rocksdb.actual-delayed-write-rate"),
            ),
            (
                "pharos_rocksdb_running_compactions",
                "Compactions running now.",
                db_int("rocksdb.num-running-compactions"),
            ),
            ("pharos_rocksdb_running_flushes", "Memtable flushes running now.", db_int("rocksdb.num-running-flushes")),
            (
                "pharos_rocksdb_pending_compaction_bytes",
                "Bytes RocksDB estimates compaction still has to rewrite.",
                cf_sum("rocksdb.estimate-pending-compaction-bytes"),
            ),
            ("pharos_rocksdb_level0_files", "Table files in level 0.", cf_sum("rocksdb.num-files-at-level0")),
            ("pharos_rocksdb_memtable_bytes", "Bytes of all memtables.", cf_sum("rocksdb.cur-size-all-mem-tables")),
            ("pharos_rocksdb_sst_bytes", "Bytes of all table files.", cf_sum("rocksdb.total-sst-files-size")),
        ]
    }

    /// Bytes of every file in the data directory (tables, logs, manifests).
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.path)
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}

/// Options of one column family. Data at rest is zstd-compressed in
/// blocks large enough for the repetition across neighbouring chunks and
/// postings to count; the log is short-lived and left uncompressed.
fn cf_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut o = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    if name == CF_WAL {
        o.set_compression_type(rocksdb::DBCompressionType::None);
    } else {
        o.set_compression_type(rocksdb::DBCompressionType::Zstd);
        table.set_block_size(if name == CF_CHUNKS { 32 << 10 } else { 16 << 10 });
    }
    o.set_block_based_table_factory(&table);
    o
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, Error> {
    db.cf_handle(name).ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().copied().filter(|x| b.binary_search(x).is_err()).collect()
}

struct Pending {
    id: u64,
    hash: u64,
    /// `tenant 0xff labels`: the series table's value.
    key: Vec<u8>,
}

impl Storage for RocksStorage {
    fn append(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        let min_valid = self.opts.retention_ms.map(|r| now_ms().saturating_sub(r));
        let mut head = self.head.lock();
        let mut res = AppendResult::default();
        // Room for the log record (16 bytes a sample) without regrowing.
        let samples: usize = batch.iter().map(|s| s.samples.len()).sum();
        let mut wb = WriteBatch::with_capacity_bytes(64 + 16 * samples + 16 * batch.len());
        let series_cf = self.cf(CF_SERIES)?;
        let mut entries: Vec<(u64, Vec<Sample>)> = Vec::with_capacity(batch.len());
        let mut pending: Vec<Pending> = Vec::new();
        // hash of `tenant 0xff labels` -> index in `pending` of the first series with it
        let mut pending_by_hash: IdMap<usize> = IdMap::default();
        // newest sample per series as this batch sees it
        let mut lasts: IdMap<Option<Sample>> = IdMap::default();
        let mut next_id = head.next_id;
        let tenant_series = head.tenant_series(tenant);
        let mut key = Vec::with_capacity(256);
        for s in batch {
            if let Some(reason) = self.check_labels(&s.labels) {
                res.rejected.push(reject_all(s, reason));
                continue;
            }
            let hash = series_key(tenant, &s.labels, &mut key);
            let id = match head.lookup(hash, &key) {
                Some(id) => id,
                None => {
                    let first = pending_by_hash.get(&hash).and_then(|i| pending.get(*i));
                    let earlier = match first {
                        Some(p) if p.key == key => Some(p.id),
                        // a 64-bit hash collision within one batch: rare enough to scan
                        Some(_) => pending.iter().find(|p| p.hash == hash && p.key == key).map(|p| p.id),
                        None => None,
                    };
                    match earlier {
                        Some(id) => id,
                        None => {
                            if self.opts.max_series_per_tenant.is_some_and(|max| tenant_series + pending.len() >= max) {
                                res.rejected.push(reject_all(s, RejectReason::SeriesLimit));
                                continue;
                            }
                            let id = next_id;
                            next_id += 1;
                            pending_by_hash.entry(hash).or_insert(pending.len());
                            pending.push(Pending { id, hash, key: key.clone() });
                            id
                        }
                    }
                }
            };
            let in_retention = |x: &Sample| min_valid.is_none_or(|m| x.t >= m);
            // Splitting allocates, and almost every batch is all in retention.
            let split: (Vec<Sample>, Vec<Sample>);
            let (samples, too_old): (&[Sample], &[Sample]) = if s.samples.iter().all(in_retention) {
                (&s.samples, &[])
            } else {
                split = s.samples.iter().partition(|x| in_retention(x));
                (&split.0, &split.1)
            };
            if let Some(first) = too_old.first() {
                res.rejected.push(Rejection {
                    labels: s.labels.clone(),
                    reason: RejectReason::TooOld,
                    count: too_old.len() as u64,
                    first_t: first.t,
                });
            }
            let last = *lasts.entry(id).or_insert_with(|| head.series.get(&id).and_then(|m| m.last));
            let (fresh, dups, rejected) = admit(&s.labels, last, samples);
            res.accepted += fresh.len() as u64 + dups;
            res.duplicates += dups;
            res.rejected.extend(rejected);
            if let Some(l) = fresh.last() {
                lasts.insert(id, Some(*l));
                entries.push((id, fresh));
            }
        }
        // A new series is created only if it stores something.
        let stored: IdMap<()> = entries.iter().map(|(id, _)| (*id, ())).collect();
        pending.retain(|p| stored.contains_key(&p.id));
        for p in pending {
            wb.put_cf(series_cf, keys::series_key(p.id), &p.key);
            head.insert(p.id, tenant, p.hash, p.key[tenant.len() + 1..].into());
        }
        for (id, samples) in &entries {
            self.index_partitions(&mut head, *id, samples, &mut wb)?;
        }
        // With an external log only new series and postings are written here
        // (mostly nothing); otherwise the log record makes the samples durable.
        if !self.opts.external_log && !entries.is_empty() {
            wb.put_cf(self.cf(CF_WAL)?, head.next_seq.to_be_bytes(), wal::encode(&entries));
        }
        let mut wrote = false;
        if !wb.is_empty() {
            // Not synced here: the sync runs after the head lock is let go,
            // shared with the appends that wrote meanwhile (group commit).
            if let Err(e) = self.db.write(wb) {
                // Nothing was stored: forget the series this batch created,
                // and make the others write their postings again.
                for (id, _) in &entries {
                    match head.series.get_mut(id) {
                        Some(s) if s.last.is_none() => head.remove(*id),
                        Some(s) => s.indexed = None,
                        None => {}
                    }
                }
                return Err(e.into());
            }
            if !self.opts.external_log {
                head.next_seq += 1;
                wrote = true;
            }
        }
        // A write that stored nothing new still answers for samples others
        // wrote (duplicates): it waits for everything written so far.
        let ticket = match (self.opts.external_log, wrote) {
            (true, _) => 0,
            (false, true) => self.durable.issue(),
            (false, false) => self.durable.current(),
        };
        let mut cut = WriteBatch::default();
        for (id, samples) in &entries {
            self.apply(&mut head, *id, samples, &mut cut)?;
        }
        if !cut.is_empty() {
            self.db.write(cut)?;
        }
        drop(head);
        self.durable.wait(ticket)?;
        self.count(&res);
        Ok(res)
    }

    fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        if mint > maxt {
            return Ok(Vec::new());
        }
        let chunks = self.cf(CF_CHUNKS)?;
        let mut found: BTreeMap<u64, Vec<Sample>> = BTreeMap::new();
        let (first, last) = (keys::partition_of(mint), keys::partition_of(maxt));
        let mut from = first;
        // Skip straight to the partitions that hold data of this tenant.
        while let Some(p) = self.next_partition(tenant, from, last)? {
            from = p.saturating_add(1);
            let ids = self.resolve(tenant, p, matchers)?;
            // The head chunks of these series, copied under the lock.
            let heads: Vec<(u64, Option<i64>, Vec<u8>)> = {
                let head = self.head.lock();
                ids.iter()
                    .filter_map(|id| head.series.get(id).map(|s| (*id, s.chunk.min_t(), s.chunk.bytes().to_vec())))
                    .collect()
            };
            for (id, head_min, head_bytes) in heads {
                let samples = found.entry(id).or_default();
                let prefix = keys::chunk_prefix(p, id);
                let mut ro = ReadOptions::default();
                ro.set_iterate_range(rocksdb::PrefixRange(&prefix[..]));
                for item in self.db.iterator_cf_opt(chunks, ro, IteratorMode::From(&prefix, Direction::Forward)) {
                    let (k, v) = item?;
                    let min = keys::chunk_key_min_t(&k).ok_or_else(|| Error::Corrupt("chunk key".into()))?;
                    if min > maxt {
                        break;
                    }
                    let (max, bytes) =
                        keys::split_chunk_value(&v).ok_or_else(|| Error::Corrupt("chunk value".into()))?;
                    if max < mint || Some(min) == head_min {
                        continue; // out of range, or an older flush of the open head chunk
                    }
                    let decoded = pharos_chunkenc::decode_stored(bytes).map_err(|e| Error::Corrupt(e.to_string()))?;
                    samples.extend(
                        decoded.into_iter().filter(|(t, _)| *t >= mint && *t <= maxt).map(|(t, v)| Sample::new(t, v)),
                    );
                }
                if head_min.is_some_and(|m| keys::partition_of(m) == p) {
                    decode_into(&head_bytes, mint, maxt, samples)?;
                }
            }
            if p == i64::MAX {
                break;
            }
        }
        let head = self.head.lock();
        Ok(found
            .into_iter()
            .filter(|(_, samples)| !samples.is_empty())
            .filter_map(|(id, samples)| head.series.get(&id).map(|s| Series::new(s.labels(), samples)))
            .collect())
    }

    fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error> {
        let mut labels = self.matching_labels(tenant, matchers);
        labels.sort();
        Ok(labels)
    }

    fn label_names(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let names: BTreeSet<String> = self
            .matching_labels(tenant, matchers)
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn label_values(&self, tenant: &str, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let values: BTreeSet<String> =
            self.matching_labels(tenant, matchers).iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
        Ok(values.into_iter().collect())
    }

    fn flush(&self) -> Result<(), Error> {
        let mut head = self.head.lock();
        let mut wb = WriteBatch::default();
        for (id, s) in head.series.iter_mut().filter(|(_, s)| s.dirty) {
            self.write_chunk(&mut wb, *id, &s.chunk)?;
            s.dirty = false;
        }
        let trimmed = head.next_seq;
        wb.delete_range_cf(self.cf(CF_WAL)?, 0u64.to_be_bytes(), trimmed.to_be_bytes());
        if let Some(position) = self.log_position.lock().as_ref() {
            wb.put_cf(self.cf(CF_META)?, LOG_POSITION_KEY, position);
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(wb, &w)?;
        drop(head);
        for name in CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        // The trimmed log may already sit in table files: drop them now
        // rather than whenever compaction gets to them. Records appended
        // since (sequence >= `trimmed`) are kept.
        if let Some(end) = trimmed.checked_sub(1) {
            let wal = self.cf(CF_WAL)?;
            self.db.delete_file_in_range_cf(wal, 0u64.to_be_bytes(), end.to_be_bytes())?;
            self.db.compact_range_cf(wal, Some(0u64.to_be_bytes()), Some(trimmed.to_be_bytes()));
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The sync of the database's log: RocksDB's write-ahead log is written
/// in order, so syncing it makes every write that returned before durable.
fn log_sync(db: Arc<DB>, fault: Option<SyncHook>) -> durable::SyncFn {
    Box::new(move || {
        if let Some(hook) = &fault {
            (hook.0)()?;
        }
        db.flush_wal(true).map_err(|e| e.to_string())
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn decode_into(bytes: &[u8], mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), Error> {
    for item in pharos_chunkenc::iter(bytes) {
        let (t, v) = item.map_err(|e| Error::Corrupt(e.to_string()))?;
        if t >= mint && t <= maxt {
            out.push(Sample::new(t, v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two label sets whose hashes collide (forced here; xxh3 collisions are
    /// too rare to find) are told apart by their encodings.
    #[test]
    fn head_keeps_series_whose_hashes_collide_apart() {
        let mut head = Head::default();
        let (a, b) = (Labels::from_pairs(&[("__name__", "a")]), Labels::from_pairs(&[("__name__", "b")]));
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        series_key("t", &a, &mut ka);
        series_key("t", &b, &mut kb);
        let hash = 42;
        head.insert(1, "t", hash, ka[2..].into());
        head.insert(2, "t", hash, kb[2..].into());
        assert_eq!((head.lookup(hash, &ka), head.lookup(hash, &kb)), (Some(1), Some(2)));
        let mut kc = Vec::new();
        series_key("t", &Labels::from_pairs(&[("__name__", "c")]), &mut kc);
        assert_eq!(head.lookup(hash, &kc), None);
        head.insert(4, "t", hash, kc[2..].into());
        assert_eq!((head.lookup(hash, &ka), head.lookup(hash, &kc)), (Some(1), Some(4)));
        // removal finds the entry by the real hash of the labels
        let real = series_key("t", &a, &mut Vec::new());
        head.insert(3, "t", real, ka[2..].into());
        head.remove(3);
        assert!(!head.by_hash.contains_key(&real));
        assert_eq!(head.tenant_series("t"), 3);
    }
}
