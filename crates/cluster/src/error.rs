/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Storage(#[from] pharos_tsdb::Error),
    #[error("shard {shard} unavailable: {msg}")]
    Unavailable { shard: u32, msg: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::BadRequest(m) => tonic::Status::invalid_argument(m),
            Error::Unavailable { .. } => tonic::Status::unavailable(e.to_string()),
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
            _ => Error::Unavailable { shard, msg: s.message().to_string() },
        }
    }
}
