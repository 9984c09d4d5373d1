//! Evaluation threads: the CPU-bound stages of a query (parsing, lowering,
//! evaluation, and dropping the trees they build) run here, off the async runtime's
//! worker threads, so heavy queries cannot stall writes or health checks.
//!
//! Each call runs on a thread of its own whose stack fits the deepest expression tree
//! [`crate::limits::check_text`] lets through; the engine's concurrency limit bounds
//! how many exist at once. A panic on such a thread fails its query, never the process.

use crate::Error;

/// Stack of an evaluation thread. Only the pages a query touches are ever committed.
const STACK_BYTES: usize = 256 << 20;

/// Whether the caller stopped waiting for the result (its future was dropped): long
/// loops check it and give up early.
pub(crate) type Abandoned<'a> = &'a dyn Fn() -> bool;

/// Runs `f` on an evaluation thread and waits for it without blocking the caller's
/// thread.
pub(crate) async fn run<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Abandoned<'_>) -> Result<T, Error> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pharos-promql".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let res = f(&|| tx.is_closed());
            let _ = tx.send(res);
        })
        .map_err(|e| Error::Internal(format!("cannot start a query evaluation thread: {e}")))?;
    rx.await.map_err(|_| Error::Internal("query evaluation failed unexpectedly".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_off_the_calling_thread_and_survives_panics() {
        let caller = std::thread::current().id();
        let other = futures::executor::block_on(run(move |_| Ok(std::thread::current().id() != caller)));
        assert!(other.unwrap());
        let err = futures::executor::block_on(run::<(), _>(|_| panic!("boom"))).unwrap_err();
        assert_eq!(err.error_type(), "internal");
    }
}
