//! Which scrapers are live, and which targets move when that changes.
//!
//! Members come from a static peer list (the topology). Each scraper polls
//! every peer's [`MEMBER_PATH`] every [`CHECK_EVERY`]: a peer that answers
//! 503 (it is leaving, see [`Scraper::leave`](crate::Scraper::leave)) leaves the ring at once; one
//! that does not answer leaves after [`FAILED_CHECKS`] failed checks in a
//! row; one that answers 2xx (again) is in. This scraper is always in its
//! own view. The live set is published on a watch channel that the scrape
//! manager follows.
//!
//! [`moves`] is the pure decision: which targets change owner between two
//! member sets (about 1/N of them when one member joins or leaves).

use std::collections::BTreeMap;
use std::time::Duration;

use pharos_cluster::Ring;
use tokio::sync::watch;

/// How often each peer's readiness is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The path a scraper answers 200 on while it is a member, 503 while leaving.
pub const MEMBER_PATH: &str = "/-/member";
/// Failed checks in a row (no answer) after which a peer leaves the ring.
pub const FAILED_CHECKS: u32 = 3;

/// One target changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub key: u64,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The owner of `key` among `members` (the ring of [`owned_targets`](crate::owned_targets)).
pub fn owner_of(ring: &Ring<String>, key: u64) -> Option<String> {
    ring.owner(key).cloned()
}

/// The targets (by key) whose owner differs between the two member sets.
pub fn moves(keys: &[u64], before: &[String], after: &[String]) -> Vec<Move> {
    let (b, a) = (Ring::new(before.iter().cloned()), Ring::new(after.iter().cloned()));
    keys.iter()
        .filter_map(|&key| {
            let (from, to) = (owner_of(&b, key), owner_of(&a, key));
            (from != to).then_some(Move { key, from, to })
        })
        .collect()
}

/// A static peer list with health checks.
pub struct Membership {
    live: watch::Receiver<Vec<String>>,
}

impl Membership {
    /// Only `me`, never changing (a lone scraper, `pharos up`).
    pub fn alone(me: &str) -> Self {
        let (_tx, live) = watch::channel(vec![me.to_string()]);
        Self { live }
    }

    /// `peers` are (id, base URL) of every scraper, `me` included. A first
    /// round of checks runs before this returns, in which a peer that does
    /// not answer is out at once (a starting scraper must not leave targets
    /// to a dead peer); after that it takes [`FAILED_CHECKS`].
    pub async fn start(me: &str, peers: Vec<(String, String)>) -> Self {
        let mut checker = Checker {
            me: me.to_string(),
            peers,
            client: reqwest::Client::builder().timeout(CHECK_EVERY).build().unwrap_or_default(),
            failed: BTreeMap::new(),
            out: BTreeMap::new(),
        };
        let (tx, live) = watch::channel(checker.round(true).await);
        tokio::spawn(async move {
            while !tx.is_closed() {
                tokio::time::sleep(CHECK_EVERY).await;
                let now = checker.round(false).await;
                tx.send_if_modified(|v| {
                    let changed = *v != now;
                    if changed {
                        *v = now.clone();
                    }
                    changed
                });
            }
        });
        Self { live }
    }

    /// The live members now, and their changes.
    pub fn watch(&self) -> watch::Receiver<Vec<String>> {
        self.live.clone()
    }
}

struct Checker {
    me: String,
    peers: Vec<(String, String)>,
    client: reqwest::Client,
    failed: BTreeMap<String, u32>,
    out: BTreeMap<String, bool>,
}

impl Checker {
    /// Checks every peer once; returns the live members.
    async fn round(&mut self, first: bool) -> Vec<String> {
        let checks = self.peers.iter().filter(|(id, _)| *id != self.me).map(|(id, base)| {
            let client = self.client.clone();
            async move {
                let r = client.get(format!("{base}{MEMBER_PATH}")).send().await;
                (id.clone(), r.map(|r| r.status().as_u16()).ok())
            }
        });
        for (id, status) in futures::future::join_all(checks).await {
            let n = self.failed.entry(id.clone()).or_default();
            let was_out = self.out.get(&id).copied().unwrap_or(false);
            let gone = match status {
                Some(s) if (200..300).contains(&s) => {
                    *n = 0;
                    false
                }
                Some(503) => true,
                _ => {
                    *n += 1;
                    first || was_out || *n >= FAILED_CHECKS
                }
            };
            if self.out.insert(id.clone(), gone) != Some(gone) && (!first || gone) {
                tracing::info!(peer = %id, live = !gone, "scraper membership changed");
            }
        }
        self.peers.iter().map(|(id, _)| id.clone()).filter(|id| !self.out.get(id).copied().unwrap_or(false)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("scraper-{i}")).collect()
    }

    fn keys() -> Vec<u64> {
        (0..3_000u64).map(|k| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes())).collect()
    }

    #[test]
    fn a_joining_member_takes_about_one_nth_and_only_it_gains() {
        let moved = moves(&keys(), &ids(3), &ids(4));
        assert!((500..1_000).contains(&moved.len()), "{}", moved.len()); // ideal 750
        assert!(moved.iter().all(|m| m.to.as_deref() == Some("scraper-3")));
    }

    #[test]
    fn a_leaving_member_hands_over_only_its_own_targets() {
        let before = ids(3);
        let after: Vec<String> = before.iter().filter(|m| *m != "scraper-1").cloned().collect();
        let moved = moves(&keys(), &before, &after);
        assert!((700..1_300).contains(&moved.len()), "{}", moved.len()); // ideal 1000
        assert!(moved.iter().all(|m| m.from.as_deref() == Some("scraper-1") && m.to.is_some()));
    }

    #[test]
    fn same_members_move_nothing_in_any_order() {
        let mut shuffled = ids(5);
        shuffled.reverse();
        assert!(moves(&keys(), &ids(5), &shuffled).is_empty());
        assert!(moves(&keys(), &ids(1), &ids(1)).is_empty());
    }
}
