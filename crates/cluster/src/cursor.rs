//! Which replica a shard call tries next, and when: the decisions of
//! [`RemoteShard`](crate::RemoteShard)'s retry loop as a pure type. The
//! loop (`RemoteShard::call_replica`) makes the attempts and sleeps; the
//! cursor only looks at the failures and the clock it is given.
//!
//! - A failure that no retry fixes ([`Error::retryable`] false) ends the
//!   call at once.
//! - "Not leader" naming the leader: that replica is tried at once (not in
//!   follower-read mode, which follows no hint), unless it is itself down.
//! - An unavailable replica is marked down for [`DOWN_FOR`]: the call
//!   neither rotates back to it nor follows a stale hint naming it while
//!   another replica may answer.
//! - Any other retry moves to the next replica not down, after a backoff
//!   (25 ms doubling to 500 ms): in leader mode after every failure, in
//!   follower-read mode after a whole round of them.
//! - The call ends when the next backoff would pass the deadline: with the
//!   last error, or unavailable if no leader was found.

use std::time::{Duration, Instant};

use crate::{Error, ErrorCode};

/// How long a replica found unavailable is passed over within one call.
pub(crate) const DOWN_FOR: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What the call does after a failed attempt.
#[derive(Debug)]
pub(crate) enum Step {
    /// Try replica `replica` (an index into the shard's replicas) after
    /// waiting `wait` (zero: at once).
    Try { replica: usize, wait: Duration },
    /// Give up with this error.
    Fail(Error),
}

/// The position of one shard call among the shard's replicas. See the
/// module overview.
pub(crate) struct ReplicaCursor {
    shard: u32,
    /// Raft node id of each replica, to follow a "not leader" hint.
    nodes: Vec<Option<u64>>,
    /// Follower-read mode: round robin, no hints, backoff per round.
    spread: bool,
    current: usize,
    /// Until when each replica is passed over.
    down_until: Vec<Option<Instant>>,
    failures: usize,
    backoff: Duration,
    deadline: Instant,
}

impl ReplicaCursor {
    /// A call to shard `shard` whose replicas have the raft ids `nodes`,
    /// starting at replica `first` (modulo their number) at `start` and
    /// retrying until `start + deadline`.
    pub(crate) fn new(
        shard: u32,
        nodes: Vec<Option<u64>>,
        first: usize,
        spread: bool,
        start: Instant,
        deadline: Duration,
    ) -> Self {
        let n = nodes.len().max(1);
        Self {
            shard,
            down_until: vec![None; nodes.len()],
            nodes,
            spread,
            current: first % n,
            failures: 0,
            backoff: FIRST_BACKOFF,
            deadline: start + deadline,
        }
    }

    /// The replica the next attempt goes to.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    fn is_down(&self, i: usize, now: Instant) -> bool {
        self.down_until.get(i).copied().flatten().is_some_and(|t| now < t)
    }

    /// After the attempt on [`Self::current`] failed with `err` at `now`:
    /// where and when to try next, or to give up.
    pub(crate) fn next(&mut self, err: Error, now: Instant) -> Step {
        if !err.retryable() {
            return Step::Fail(err);
        }
        if now + self.backoff > self.deadline {
            return Step::Fail(match err {
                Error::NotLeader { .. } => {
                    Error::Unavailable { shard: self.shard, msg: "no leader within the deadline".into() }
                }
                other => other,
            });
        }
        let i = self.current;
        if err.code() == ErrorCode::Unavailable
            && let Some(d) = self.down_until.get_mut(i)
        {
            *d = Some(now + DOWN_FOR);
        }
        let hinted = match &err {
            Error::NotLeader { leader: Some(l), .. } if !self.spread => {
                self.nodes.iter().position(|n| *n == Some(*l)).filter(|&j| j != i && !self.is_down(j, now))
            }
            _ => None,
        };
        if let Some(j) = hinted {
            self.current = j;
            return Step::Try { replica: j, wait: Duration::ZERO };
        }
        self.failures += 1;
        let n = self.nodes.len().max(1);
        let wait = if !self.spread || self.failures.is_multiple_of(n) {
            let w = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            w
        } else {
            Duration::ZERO
        };
        // The next replica not down (this one again if it is the only
        // one); if every one is down, simply the next.
        self.current = (1..=n).map(|k| (i + k) % n).find(|&j| !self.is_down(j, now)).unwrap_or((i + 1) % n);
        Step::Try { replica: self.current, wait }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn not_leader(leader: Option<u64>) -> Error {
        Error::NotLeader { leader, addr: None }
    }

    fn down() -> Error {
        Error::Unavailable { shard: 1, msg: "connection refused".into() }
    }

    /// Replicas with raft ids 10, 11, 12; the call starts at `first`.
    fn cursor(first: usize, spread: bool, t0: Instant) -> ReplicaCursor {
        ReplicaCursor::new(1, vec![Some(10), Some(11), Some(12)], first, spread, t0, Duration::from_secs(15))
    }

    fn tried(step: Step) -> (usize, Duration) {
        match step {
            Step::Try { replica, wait } => (replica, wait),
            Step::Fail(e) => panic!("gave up: {e}"),
        }
    }

    #[test]
    fn a_hint_is_followed_at_once() {
        let t0 = Instant::now();
        let mut c = cursor(0, false, t0);
        assert_eq!(c.current(), 0);
        assert_eq!(tried(c.next(not_leader(Some(12)), t0)), (2, Duration::ZERO));
        assert_eq!(c.current(), 2);
    }

    #[test]
    fn no_hint_moves_on_after_a_growing_backoff() {
        let t0 = Instant::now();
        let mut c = cursor(1, false, t0);
        let waits: Vec<(usize, Duration)> = (0..7).map(|_| tried(c.next(not_leader(None), t0))).collect();
        let ms = |r: usize, w: u32| (r, MS * w);
        assert_eq!(waits, [ms(2, 25), ms(0, 50), ms(1, 100), ms(2, 200), ms(0, 400), ms(1, 500), ms(2, 500)]);
    }

    /// The bug this type fixed: the loop rotated back to a replica that
    /// had just failed to answer.
    #[test]
    fn a_replica_found_down_is_not_tried_again_within_the_call() {
        let t0 = Instant::now();
        let mut c = cursor(0, false, t0);
        assert_eq!(tried(c.next(down(), t0)).0, 1);
        assert_eq!(tried(c.next(not_leader(None), t0 + MS * 30)).0, 2);
        assert_eq!(tried(c.next(not_leader(None), t0 + MS * 80)).0, 1, "rotated back to the replica found down");
        // A stale hint naming it is not followed either.
        assert_eq!(tried(c.next(not_leader(Some(10)), t0 + MS * 200)).0, 2);
        // Once the mark has run out, it is tried again.
        let later = t0 + DOWN_FOR + MS;
        assert_eq!(tried(c.next(not_leader(Some(10)), later)), (0, Duration::ZERO));
    }

    #[test]
    fn a_lone_replica_is_retried_even_when_down() {
        let t0 = Instant::now();
        let mut c = ReplicaCursor::new(1, vec![None], 0, false, t0, Duration::from_secs(15));
        assert_eq!(tried(c.next(down(), t0)), (0, MS * 25));
        assert_eq!(tried(c.next(down(), t0)), (0, MS * 50));
    }

    #[test]
    fn when_every_replica_is_down_the_next_is_tried() {
        let t0 = Instant::now();
        let mut c = cursor(0, false, t0);
        let order: Vec<usize> = (0..4).map(|_| tried(c.next(down(), t0)).0).collect();
        assert_eq!(order, [1, 2, 0, 1]);
    }

    #[test]
    fn follower_reads_follow_no_hint_and_back_off_per_round() {
        let t0 = Instant::now();
        let mut c = cursor(4, true, t0);
        assert_eq!(c.current(), 1);
        let steps: Vec<(usize, Duration)> = (0..6).map(|_| tried(c.next(not_leader(Some(10)), t0))).collect();
        let z = Duration::ZERO;
        assert_eq!(steps, [(2, z), (0, z), (1, MS * 25), (2, z), (0, z), (1, MS * 50)]);
    }

    #[test]
    fn errors_no_retry_fixes_end_the_call() {
        let t0 = Instant::now();
        for e in [Error::BadRequest("bad matcher".into()), Error::Internal("boom".into())] {
            let mut c = cursor(0, false, t0);
            assert!(matches!(c.next(e, t0), Step::Fail(Error::BadRequest(_) | Error::Internal(_))));
        }
    }

    #[test]
    fn the_deadline_ends_the_call() {
        let t0 = Instant::now();
        let mut c = ReplicaCursor::new(1, vec![Some(10), Some(11)], 0, false, t0, Duration::from_secs(1));
        assert_eq!(tried(c.next(not_leader(None), t0)).0, 1);
        let Step::Fail(e) = c.next(not_leader(None), t0 + Duration::from_millis(990)) else { panic!("went on") };
        assert_eq!(e.to_string(), "shard 1 unavailable: no leader within the deadline");
        let mut c = ReplicaCursor::new(1, vec![Some(10), Some(11)], 0, false, t0, Duration::from_secs(1));
        let Step::Fail(e) = c.next(down(), t0 + Duration::from_secs(2)) else { panic!("went on") };
        assert_eq!(e.to_string(), "shard 1 unavailable: connection refused");
    }
}
