//! The crate's one error type.

/// What can go wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or a malformed input file.
    #[error("{0}")]
    Invalid(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The run finished but found failures (errors, missing samples); the
    /// summary has been printed.
    #[error("{0}")]
    Failed(String),
    #[error("chart: {0}")]
    Chart(String),
}
