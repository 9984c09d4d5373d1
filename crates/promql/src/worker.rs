//! Evaluation threads: the CPU-bound stages of a query (parsing, lowering,
//! evaluation, and dropping the trees they build) run here, off the async runtime's
//! worker threads, so heavy queries cannot stall writes or health checks.
//!
//! The threads are a pool, started on demand and kept, each with a stack that fits the
//! deepest expression tree [`crate::limits::check_text`] lets through. A panic on such
//! a thread fails its query, never the thread or the process.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use crate::Error;

/// Stack of an evaluation thread. Only the pages a query touches are ever committed.
const STACK_BYTES: usize = 256 << 20;

/// Whether the caller stopped waiting for the result (its future was dropped): long
/// loops check it and give up early.
pub(crate) type Abandoned<'a> = &'a dyn Fn() -> bool;

/// Evaluation threads kept at most; further work waits for one to be free.
/// Each engine bounds its own concurrent queries, and work never waits on other
/// work, so a queue cannot deadlock.
const MAX_THREADS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The evaluation threads, started on demand and then kept: starting a thread
/// with a large stack for every query showed in the per-query cost.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

static POOL: OnceLock<Arc<Pool>> = OnceLock::new();

impl Pool {
    fn submit(self: &Arc<Self>, job: Job) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.jobs.push_back(job);
        if st.idle > 0 || st.threads >= MAX_THREADS {
            self.work.notify_one();
            return Ok(());
        }
        st.threads += 1;
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name("pharos-promql".into())
            .stack_size(STACK_BYTES)
            .spawn(move || pool.serve());
        if let Err(e) = started {
            st.threads -= 1;
            if st.threads == 0 {
                st.jobs.clear();
                return Err(Error::Internal(format!("cannot start a query evaluation thread: {e}")));
            }
            // The threads there are will take it.
            self.work.notify_one();
        }
        Ok(())
    }

    fn serve(&self) {
        loop {
            let job = {
                let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if let Some(job) = st.jobs.pop_front() {
                        break job;
                    }
                    st.idle += 1;
                    st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                    st.idle -= 1;
                }
            };
            // A panic fails its query (its answer channel is dropped), not the thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

/// Runs `f` on an evaluation thread and waits for it without blocking the caller's
/// thread.
pub(crate) async fn run<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Abandoned<'_>) -> Result<T, Error> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let res = f(&|| tx.is_closed());
        let _ = tx.send(res);
    });
    POOL.get_or_init(Default::default).submit(job)?;
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

    #[test]
    fn more_work_than_threads_queues_and_all_of_it_runs() {
        let n = MAX_THREADS * 2;
        let runs = (0..n).map(|i| {
            run(move |_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(i)
            })
        });
        let done = futures::executor::block_on(futures::future::join_all(runs));
        let got: Vec<usize> = done.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
        let st = POOL.get().unwrap().state.lock().unwrap();
        assert!(st.threads <= MAX_THREADS, "{} threads", st.threads);
    }
}
