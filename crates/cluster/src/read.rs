//! Which replica of a replicated shard answers a read.
//!
//! Every read is linearizable (it sees every write acknowledged before it
//! began); the mode only says who serves it:
//!
//! - [`ReadReplica::Leader`] (the default): the leader, after its ReadIndex
//!   check. Other replicas answer "not leader" and the client follows.
//! - [`ReadReplica::Follower`]: any replica. A follower asks the leader for
//!   its read index and waits until it applied it (raft's follower read),
//!   which spreads the reading over the replicas at the price of that wait.
//!
//! The querier chooses (`pharos querier --read-replica`); the mode travels
//! to the ingester in the [`READ_REPLICA_HEADER`] gRPC metadata of each read.

use std::fmt;
use std::str::FromStr;

/// gRPC metadata of a read request: `follower` lets any replica answer;
/// absent (or `leader`), only the leader does.
pub const READ_REPLICA_HEADER: &str = "pharos-read-replica";

/// See the module overview.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadReplica {
    #[default]
    Leader,
    Follower,
}

impl ReadReplica {
    /// The mode a read request asks for.
    pub fn of_request(meta: &tonic::metadata::MetadataMap) -> Self {
        match meta.get(READ_REPLICA_HEADER).and_then(|v| v.to_str().ok()) {
            Some("follower") => ReadReplica::Follower,
            _ => ReadReplica::Leader,
        }
    }

    /// `msg` as a read request in this mode.
    pub fn request<T>(self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if self == ReadReplica::Follower {
            req.metadata_mut().insert(READ_REPLICA_HEADER, tonic::metadata::MetadataValue::from_static("follower"));
        }
        req
    }
}

impl FromStr for ReadReplica {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "leader" => Ok(ReadReplica::Leader),
            "follower" => Ok(ReadReplica::Follower),
            other => Err(format!("expected leader or follower, got {other:?}")),
        }
    }
}

impl fmt::Display for ReadReplica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadReplica::Leader => "leader",
            ReadReplica::Follower => "follower",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_mode_travels_in_the_request_metadata() {
        for mode in [ReadReplica::Leader, ReadReplica::Follower] {
            let req = mode.request(());
            assert_eq!(ReadReplica::of_request(req.metadata()), mode);
            assert_eq!(mode.to_string().parse::<ReadReplica>().unwrap(), mode);
        }
        assert!(ReadReplica::Leader.request(()).metadata().get(READ_REPLICA_HEADER).is_none());
        assert!("any".parse::<ReadReplica>().is_err());
    }
}
