//! The cluster layer: how samples and queries cross shards.
//!
//! - [`Shard`]: one shard's storage as seen from another role, either in the
//!   same process ([`LocalShard`], the embedded `pharos up`) or over gRPC
//!   ([`RemoteShard`], `pharos cluster up` and Kubernetes). A remote shard
//!   writes over one long-lived gRPC stream per replica (`write_stream.rs`);
//!   which replica a call tries next, and when, is decided by a pure
//!   cursor (`cursor.rs`). It mirrors the storage contract
//!   (`pharos_storage::Storage`): the same calls and arguments, async.
//! - [`Error`]: one error type with an [`ErrorCode`] that crosses the wire
//!   typed and decides retries ([`Error::retryable`]); a write's rejections
//!   cross it as positions in the batch with a typed reason (`convert.rs`).
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
//! - [`Topology`] (`topology.rs`): which processes exist and where they
//!   listen, its validation and the naming of replicas; [`plan_group`]
//!   (`formation.rs`) decides a replicated shard's raft group from it, and
//!   [`start_replica`] starts the replica; `status.rs` renders the cluster
//!   status page ([`status::render`]: leader, term, members and lag from the
//!   replicas' raft status).
//! - Pushdown (`pushdown.rs`): shards evaluate the aggregations the querier
//!   pushes down ([`Cluster::eval_partials`]); `pharos-promql` decides what
//!   is pushed and combines the partial answers.
//!
//! Routing and merging are pure functions; this crate owns no HTTP, and its
//! only PromQL is running `pharos-promql`'s engine for pushed-down requests.

mod convert;
mod cursor;
mod distributor;
mod error;
mod formation;
mod inflight;
mod ingester;
mod pushdown;
mod raft;
mod read;
mod ring;
mod shard;
pub mod status;
mod topology;
mod write_stream;

pub use convert::*;
pub use distributor::{Cluster, DEFAULT_FUTURE_GRACE_MS};
pub use error::{Error, ErrorCode, LEADER_ADDR_HEADER, LEADER_ID_HEADER};
pub use formation::{GroupPlan, plan_group, start_replica};
pub use inflight::{DEFAULT_INFLIGHT_BYTES, InflightBytes, batch_cost};
pub use ingester::{IngesterService, serve_ingester};
pub use raft::{GrpcTransport, RaftService, add_replica, remove_replica, replica_status};
pub use read::{READ_REPLICA_HEADER, ReadReplica};
pub use ring::{Ring, VNODES};
pub use shard::{LocalShard, RemoteShard, Shard};
pub use topology::{Endpoint, ShardTopology, Topology, node_id};
pub use write_stream::{write_stream_metrics, write_streams_opened_total};

/// Largest gRPC message accepted or sent (remote_write batches can be big).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
