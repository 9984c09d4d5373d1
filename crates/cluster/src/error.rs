//! The cluster layer's one error type, its [`ErrorCode`], and how both cross
//! gRPC: as a `tonic::Status` (unary calls) or a typed `WriteError` (a write
//! on a write stream). The code, never the message text, decides what a
//! client does with an error ([`Error::retryable`]).

use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::write_error::Code as WireCode;

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Storage(#[from] pharos_storage::Error),
    /// A shard (as its clients see it) that could not answer.
    #[error("shard {shard} unavailable: {msg}")]
    Unavailable { shard: u32, msg: String },
    /// One replica that cannot answer now (no quorum, shutting down, not
    /// reached); `replica` is its raft id or its address.
    #[error("replica {replica} unavailable: {msg}")]
    ReplicaUnavailable { replica: String, msg: String },
    /// A replica that is not its shard's raft leader; `leader` is the raft
    /// id of the one it knows of.
    #[error("not leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64>, addr: Option<String> },
    #[error("internal: {0}")]
    Internal(String),
    /// A topology that is unreadable or fails validation; names the field.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
}

/// What kind of failure an [`Error`] is: what crosses the wire, and what
/// decides whether a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request itself is wrong.
    BadRequest,
    /// Not the raft leader: try the leader.
    NotLeader,
    /// Cannot answer now: try again or elsewhere.
    Unavailable,
    /// A fault of the server.
    Internal,
}

/// gRPC metadata naming the leader in a "not leader" answer.
pub const LEADER_ID_HEADER: &str = "pharos-leader-id";
pub const LEADER_ADDR_HEADER: &str = "pharos-leader-addr";
/// The message of a "not leader" status (for people: the code decides).
const NOT_LEADER: &str = "not leader";

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::NotLeader { .. } => ErrorCode::NotLeader,
            Error::Unavailable { .. } | Error::ReplicaUnavailable { .. } => ErrorCode::Unavailable,
            Error::Storage(_) | Error::Internal(_) | Error::InvalidTopology(_) => ErrorCode::Internal,
        }
    }

    /// Whether the same call may succeed if tried again (on the leader, on
    /// another replica, or later).
    pub fn retryable(&self) -> bool {
        matches!(self.code(), ErrorCode::NotLeader | ErrorCode::Unavailable)
    }

    /// The error of raft replica `replica` (its raft node id).
    pub fn from_raft(replica: u64, e: pharos_raft::Error) -> Self {
        match e {
            pharos_raft::Error::NotLeader { leader, leader_addr } => Error::NotLeader { leader, addr: leader_addr },
            pharos_raft::Error::Storage(s) => Error::Storage(s),
            // Raft trouble (no quorum, shutting down, lost entry) is worth retrying elsewhere.
            other => Error::ReplicaUnavailable { replica: replica.to_string(), msg: other.to_string() },
        }
    }

    /// The text sent with the code: a bad request's own words, else the
    /// whole error.
    fn wire_message(&self) -> String {
        match self {
            Error::BadRequest(m) => m.clone(),
            Error::NotLeader { .. } => NOT_LEADER.into(),
            other => other.to_string(),
        }
    }

    /// The error a call to shard `shard` failed with. Codes the ingester
    /// does not send (the transport's: deadline, cancelled, ...) count as
    /// unavailable, except those that no retry can fix.
    pub fn from_status(shard: u32, s: tonic::Status) -> Self {
        Self::decode_status(s, &format!("shard {shard}"), |msg| Error::Unavailable { shard, msg })
    }

    /// The error a call to the one replica at `addr` (not a shard: raft
    /// administration) failed with; see [`Error::from_status`].
    pub fn from_replica_status(addr: &str, s: tonic::Status) -> Self {
        Self::decode_status(s, addr, |msg| Error::ReplicaUnavailable { replica: addr.to_string(), msg })
    }

    fn decode_status(s: tonic::Status, at: &str, unavailable: impl FnOnce(String) -> Error) -> Self {
        use tonic::Code as C;
        let msg = s.message().to_string();
        match s.code() {
            C::InvalidArgument => Error::BadRequest(msg),
            C::FailedPrecondition => {
                let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
                Error::NotLeader {
                    leader: meta(LEADER_ID_HEADER).and_then(|v| v.parse().ok()),
                    addr: meta(LEADER_ADDR_HEADER),
                }
            }
            C::Internal => Error::Internal(format!("{at}: {msg}")),
            c @ (C::Unimplemented
            | C::PermissionDenied
            | C::Unauthenticated
            | C::NotFound
            | C::AlreadyExists
            | C::OutOfRange
            | C::DataLoss) => Error::Internal(format!("{at}: {c:?}: {msg}")),
            _ => unavailable(msg),
        }
    }

    /// The error a write on a write stream to shard `shard` failed with:
    /// the same as [`Error::from_status`] of the unary Write's status. A
    /// code this build does not know is an internal error, never retried.
    pub fn from_write_error(shard: u32, e: pb::WriteError) -> Self {
        match WireCode::try_from(e.code) {
            Ok(WireCode::NotLeader) => Error::NotLeader { leader: e.leader_id, addr: e.leader_addr },
            Ok(WireCode::Unavailable) => Error::Unavailable { shard, msg: e.message },
            Ok(WireCode::Invalid) => Error::BadRequest(e.message),
            Ok(WireCode::Internal) => Error::Internal(format!("shard {shard}: {}", e.message)),
            Ok(WireCode::Unspecified) | Err(_) => Error::Internal(format!(
                "shard {shard}: a write failed with unknown error code {}: {}",
                e.code, e.message
            )),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.wire_message();
        match e {
            Error::NotLeader { leader, addr } => {
                let mut s = tonic::Status::failed_precondition(msg);
                if let Some(v) = leader.and_then(|l| l.to_string().parse().ok()) {
                    s.metadata_mut().insert(LEADER_ID_HEADER, v);
                }
                if let Some(v) = addr.and_then(|a| a.parse().ok()) {
                    s.metadata_mut().insert(LEADER_ADDR_HEADER, v);
                }
                s
            }
            other => match other.code() {
                ErrorCode::BadRequest => tonic::Status::invalid_argument(msg),
                ErrorCode::Unavailable => tonic::Status::unavailable(msg),
                ErrorCode::NotLeader | ErrorCode::Internal => tonic::Status::internal(msg),
            },
        }
    }
}

/// A failed write on a write stream carries what the unary Write's status
/// would (see `write_stream.rs`).
impl From<Error> for pb::WriteError {
    fn from(e: Error) -> Self {
        let (code, message) = (e.code(), e.wire_message());
        let (leader_id, leader_addr) = match e {
            Error::NotLeader { leader, addr } => (leader, addr),
            _ => (None, None),
        };
        let code = match code {
            ErrorCode::BadRequest => WireCode::Invalid,
            ErrorCode::NotLeader => WireCode::NotLeader,
            ErrorCode::Unavailable => WireCode::Unavailable,
            ErrorCode::Internal => WireCode::Internal,
        };
        pb::WriteError { code: code as i32, message, leader_id, leader_addr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cases() -> Vec<Error> {
        vec![
            Error::NotLeader { leader: Some(3), addr: Some("10.0.0.3:9095".into()) },
            Error::NotLeader { leader: None, addr: None },
            Error::BadRequest("no batch".into()),
            Error::Unavailable { shard: 0, msg: "no quorum".into() },
            Error::ReplicaUnavailable { replica: "4".into(), msg: "raft: no quorum".into() },
            Error::Internal("boom".into()),
        ]
    }

    /// Every error survives the trip through a write stream's answer as it
    /// survives the unary Write's status, with its code.
    #[test]
    fn write_errors_decode_as_statuses_do() {
        for (a, b) in cases().into_iter().zip(cases()) {
            let code = a.code();
            let via_stream = Error::from_write_error(7, pb::WriteError::from(a));
            let via_status = Error::from_status(7, tonic::Status::from(b));
            assert_eq!(format!("{via_stream:?}"), format!("{via_status:?}"));
            assert_eq!(via_stream.code(), code, "{via_stream:?}");
        }
        let hint = Error::from_write_error(7, Error::NotLeader { leader: Some(3), addr: None }.into());
        assert!(matches!(hint, Error::NotLeader { leader: Some(3), addr: None }), "{hint:?}");
        let replica =
            Error::from_write_error(7, Error::ReplicaUnavailable { replica: "4".into(), msg: "x".into() }.into());
        assert_eq!(replica.to_string(), "shard 7 unavailable: replica 4 unavailable: x");
    }

    /// A code the client does not know is an internal error that says so,
    /// never a retry or a guess.
    #[test]
    fn unknown_write_error_code_is_internal() {
        for code in [0, 99] {
            let e = Error::from_write_error(
                2,
                pb::WriteError { code, message: "?".into(), leader_id: Some(1), leader_addr: None },
            );
            assert!(matches!(&e, Error::Internal(m) if m.contains(&format!("unknown error code {code}"))), "{e:?}");
            assert!(!e.retryable());
        }
    }

    #[test]
    fn only_not_leader_and_unavailable_are_retried() {
        let retried: Vec<bool> = cases().iter().map(Error::retryable).collect();
        assert_eq!(retried, [true, true, false, true, true, false]);
        assert!(!Error::Storage(pharos_storage::Error::Corrupt("x".into())).retryable());
    }

    /// A raft failure names the replica it happened on, not a shard.
    #[test]
    fn raft_errors_name_the_replica() {
        let e = Error::from_raft(5, pharos_raft::Error::Stopped);
        assert!(matches!(&e, Error::ReplicaUnavailable { replica, .. } if replica == "5"), "{e:?}");
        assert!(e.retryable());
        let e = Error::from_raft(5, pharos_raft::Error::NotLeader { leader: Some(2), leader_addr: None });
        assert!(matches!(e, Error::NotLeader { leader: Some(2), addr: None }), "{e:?}");
    }
}
