//! The RocksDB storage engine of one ingester (one shard replica).
//!
//! [`RocksStorage`] implements the storage contract of `pharos-storage`
//! ([`pharos_storage::Storage`]) and passes its conformance suite. Samples
//! go to a write-ahead log and an in-memory head of Gorilla-compressed
//! chunks; full chunks and flushed heads live in RocksDB next to a series
//! table and a postings index (see `rocks/mod.rs`). Beyond the contract it
//! offers what a replicated shard needs: checkpoints and restores (raft
//! snapshots), an external write-ahead log (the raft log), retention and
//! its own figures for `/metrics`.
//!
//! This crate never talks to the network and never spawns async tasks: its
//! calls block, and async callers run them on a blocking thread.

mod error;
mod rocks;

pub use error::Error;
pub use rocks::{GroupSync, RocksOptions, RocksStorage, Stats, SyncFailed, SyncHook};
