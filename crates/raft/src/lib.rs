//! Replication of one shard: every shard is a raft group (openraft 0.9).
//!
//! - [`types`]: the openraft type configuration: node ids are `u64` (the
//!   number of `ingester-N`), a [`Member`] names the replica and its gRPC
//!   address, and a log entry is a [`Request`]: a batch of writes, each one
//!   tenant's series samples, coalesced from many client batches.
//! - [`store`]: the raft log, vote and committed state in RocksDB column
//!   families of the TSDB's own database.
//! - [`state_machine`]: applies committed entries to the TSDB
//!   ([`pharos_storage::Storage::append`]), whose write-ahead log the raft log
//!   is: the TSDB's flushes record the last applied entry, and a restart
//!   applies the entries after it again; builds snapshots (TSDB
//!   checkpoints) and installs them.
//! - [`snapshot`], [`snapshot_dir`], [`archive`]: a snapshot as openraft
//!   streams it, the snapshots kept on disk, and the archive format a
//!   checkpoint directory travels in.
//! - [`network`]: openraft's network over a [`Transport`] that carries
//!   serialized RPCs; [`handle_rpc`] is the receiving side. The gRPC transport
//!   lives in `pharos-cluster`, an in-process one in [`testing`].
//! - [`replica`]: [`Replica`], what an ingester runs: start, bootstrap,
//!   write (coalescing, leader check), linearizable read barriers (on the
//!   leader, and on a follower with the leader's read index), status and
//!   membership changes.
//!
//! This crate knows nothing of HTTP or PromQL, and never blocks an async
//! worker: RocksDB and TSDB calls run on the blocking pool.

pub mod archive;
mod error;
mod metrics;
pub mod network;
pub mod replica;
pub mod snapshot;
pub mod snapshot_dir;
pub mod state_machine;
pub mod store;
pub mod testing;
pub mod types;

pub use error::Error;
pub use network::{ReadIndexRefused, RpcKind, Transport, handle_rpc, request_read_index};
pub use replica::{Replica, ReplicaOptions, ReplicaStatus};
pub use snapshot::SnapshotStorage;
pub use types::{Member, NodeId, Request, Response, TypeConfig, Write, WriteOutcome};
