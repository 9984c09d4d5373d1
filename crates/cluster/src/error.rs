use pharos_proto::pharos::v1 as pb;

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Storage(#[from] pharos_storage::Error),
    #[error("shard {shard} unavailable: {msg}")]
    Unavailable { shard: u32, msg: String },
    /// A replica that is not its shard's raft leader; `leader` is the raft
    /// id of the one it knows of.
    #[error("not leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64>, addr: Option<String> },
    #[error("internal: {0}")]
    Internal(String),
}

/// gRPC metadata naming the leader in a "not leader" answer.
pub const LEADER_ID_HEADER: &str = "pharos-leader-id";
pub const LEADER_ADDR_HEADER: &str = "pharos-leader-addr";
const NOT_LEADER: &str = "not leader";

impl From<pharos_raft::Error> for Error {
    fn from(e: pharos_raft::Error) -> Self {
        match e {
            pharos_raft::Error::NotLeader { leader, leader_addr } => Error::NotLeader { leader, addr: leader_addr },
            pharos_raft::Error::Storage(s) => Error::Storage(s),
            // Raft trouble (no quorum, shutting down, lost entry) is worth retrying elsewhere.
            other => Error::Unavailable { shard: 0, msg: other.to_string() },
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::BadRequest(m) => tonic::Status::invalid_argument(m),
            Error::Unavailable { .. } => tonic::Status::unavailable(e.to_string()),
            Error::NotLeader { leader, addr } => {
                let mut s = tonic::Status::failed_precondition(NOT_LEADER);
                if let Some(v) = leader.and_then(|l| l.to_string().parse().ok()) {
                    s.metadata_mut().insert(LEADER_ID_HEADER, v);
                }
                if let Some(v) = addr.and_then(|a| a.parse().ok()) {
                    s.metadata_mut().insert(LEADER_ADDR_HEADER, v);
                }
                s
            }
            other => tonic::Status::internal(other.to_string()),
        }
    }
}

impl Error {
    /// The error a call to shard `shard` failed with.
    pub fn from_status(shard: u32, s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::InvalidArgument => Error::BadRequest(s.message().to_string()),
            tonic::Code::Internal => Error::Internal(format!("shard {shard}: {}", s.message())),
            tonic::Code::FailedPrecondition if s.message() == NOT_LEADER => {
                let meta = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
                Error::NotLeader {
                    leader: meta(LEADER_ID_HEADER).and_then(|v| v.parse().ok()),
                    addr: meta(LEADER_ADDR_HEADER),
                }
            }
            _ => Error::Unavailable { shard, msg: s.message().to_string() },
        }
    }
}

/// A failed write on a write stream carries what the unary Write's status
/// would (see `write_stream.rs`).
impl From<Error> for pb::WriteError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader, addr } => pb::WriteError {
                code: tonic::Code::FailedPrecondition as i32,
                message: NOT_LEADER.into(),
                leader_id: leader,
                leader_addr: addr,
            },
            other => {
                let s = tonic::Status::from(other);
                pb::WriteError {
                    code: s.code() as i32,
                    message: s.message().into(),
                    leader_id: None,
                    leader_addr: None,
                }
            }
        }
    }
}

impl Error {
    /// The error a write on a write stream to shard `shard` failed with:
    /// the same as [`Error::from_status`] of the unary Write's status.
    pub fn from_write_error(shard: u32, e: pb::WriteError) -> Self {
        let code = tonic::Code::from(e.code);
        if code == tonic::Code::FailedPrecondition && e.message == NOT_LEADER {
            return Error::NotLeader { leader: e.leader_id, addr: e.leader_addr };
        }
        Error::from_status(shard, tonic::Status::new(code, e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error survives the trip through a write stream's answer as it
    /// survives the unary Write's status.
    #[test]
    fn write_errors_decode_as_statuses_do() {
        let cases = || {
            vec![
                Error::NotLeader { leader: Some(3), addr: Some("10.0.0.3:9095".into()) },
                Error::NotLeader { leader: None, addr: None },
                Error::BadRequest("no batch".into()),
                Error::Unavailable { shard: 0, msg: "no quorum".into() },
                Error::Internal("boom".into()),
            ]
        };
        for (a, b) in cases().into_iter().zip(cases()) {
            let via_stream = Error::from_write_error(7, pb::WriteError::from(a));
            let via_status = Error::from_status(7, tonic::Status::from(b));
            assert_eq!(format!("{via_stream:?}"), format!("{via_status:?}"));
        }
        let hint = Error::from_write_error(7, Error::NotLeader { leader: Some(3), addr: None }.into());
        assert!(matches!(hint, Error::NotLeader { leader: Some(3), addr: None }), "{hint:?}");
    }
}
