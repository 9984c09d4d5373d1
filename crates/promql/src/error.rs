//! Why a query failed, and the `errorType` the HTTP API reports for it.

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(String),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
    #[error("the query hit the max number of series limit (limit: {0} series)")]
    TooManySeries(usize),
    /// The query text is over a limit: its length, depth or a regex's size.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Storage(String),
    /// The engine failed (an evaluation thread could not start or died).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The `errorType` Prometheus's HTTP API reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) | Error::TooLarge(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) | Error::TooManySeries(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) | Error::Internal(_) => "internal",
        }
    }
}
