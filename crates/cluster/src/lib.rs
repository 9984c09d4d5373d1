//! The cluster layer: how samples and queries cross shards.
//!
//! - [`Shard`]: one shard's storage as seen from another role, either in the
//!   same process ([`LocalShard`], the embedded `pharos up`) or over gRPC
//!   ([`RemoteShard`], `pharos cluster up` and Kubernetes). A remote shard
//!   writes over one long-lived gRPC stream per replica (`write_stream.rs`).
//!   It mirrors the storage contract (`pharos_storage::Storage`): the same
//!   calls and arguments, async.
//! - [`Cluster`]: the distributor and the fan-out reader in one. It routes
//!   each series of a write to the shard that owns it on the [`Ring`] and
//!   reads every shard for a query, merging what comes back.
//! - [`InflightBytes`]: a byte budget of writes in flight to one shard, so a
//!   slow shard holds its writers back instead of growing memory.
//! - [`IngesterService`]: the gRPC server an ingester runs over its TSDB.
//! - [`ReadReplica`]: whether a read goes to the shard's leader or to any
//!   replica (a linearizable follower read).
//! - [`RaftService`], [`GrpcTransport`]: raft between the replicas of a
//!   shard over gRPC (`pharos-raft` owns the consensus itself).
//!
//! - Pushdown (`pushdown.rs`): shards evaluate the aggregations the querier
//!   pushes down ([`Cluster::eval_partials`]); `pharos-promql` decides what
//!   is pushed and combines the partial answers.
//!
//! Routing and merging are pure functions; this crate owns no HTTP, and its
//! only PromQL is running `pharos-promql`'s engine for pushed-down requests.

mod convert;
mod distributor;
mod error;
mod inflight;
mod ingester;
mod pushdown;
mod raft;
mod read;
mod ring;
mod shard;
mod write_stream;

pub use convert::*;
pub use distributor::Cluster;
pub use error::{Error, LEADER_ADDR_HEADER, LEADER_ID_HEADER};
pub use inflight::{DEFAULT_INFLIGHT_BYTES, InflightBytes, batch_cost};
pub use ingester::{IngesterService, serve_ingester};
pub use raft::{GrpcTransport, RaftService, add_replica, remove_replica, replica_status};
pub use read::{READ_REPLICA_HEADER, ReadReplica};
pub use ring::{Ring, VNODES};
pub use shard::{LocalShard, RemoteShard, Shard};
pub use write_stream::write_streams_opened_total;

/// Largest gRPC message accepted or sent (remote_write batches can be big).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
