//! One replica of a shard's raft group: what an ingester runs.
//!
//! Writes: [`Replica::write`] answers `NotLeader` at once on a follower.
//! On the leader the write joins a queue; a coalescing task takes every
//! write waiting there (up to [`ReplicaOptions::max_entry_samples`]) into
//! ONE raft entry, and at most [`ReplicaOptions::max_inflight_entries`]
//! entries are in flight, so a slow quorum makes the queue (bounded) and then
//! the callers wait: backpressure instead of memory. A write is answered
//! after its entry is committed by a quorum and applied to the local TSDB.
//!
//! Reads: [`Replica::read_barrier`] is openraft's ReadIndex
//! (`ensure_linearizable`): the leader confirms it still leads a quorum and
//! waits until it applied everything committed before the read began.
//! [`Replica::follower_read_barrier`] is raft's follower read, as
//! linearizable: a follower asks the leader for that read index (the
//! leader runs the same quorum check) and waits until it applied it itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use pharos_storage::{AppendResult, SeriesSamples};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Error;
use crate::network::{NetworkFactory, Transport, request_read_index};
use crate::snapshot::SnapshotStorage;
use crate::state_machine::{SnapshotStats, StateMachine};
use crate::store::{LogStore, RaftDb};
use crate::types::{Member, NodeId, Raft, Request, Write, WriteOutcome};

/// How long a read waits for the leader to confirm its lead.
const READ_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower read may take in all (read index from the leader,
/// then the local apply): less than a client's attempt on one replica
/// (3 s), so the client hears why and tries another.
const FOLLOWER_READ_TIMEOUT: Duration = Duration::from_millis(2500);

/// Settings of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub id: NodeId,
    pub member: Member,
    /// The replica's directory (`DATA_DIR/raft`): its snapshots. The raft
    /// log and state are column families of the TSDB's database.
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Samples one raft entry holds at most (a single larger write still
    /// makes one entry).
    pub max_entry_samples: usize,
    /// Entries proposed and not yet applied, at most.
    pub max_inflight_entries: usize,
    /// Writes waiting for an entry, at most; further writers wait.
    pub max_queued_writes: usize,
    /// A snapshot (TSDB checkpoint) is taken every this many log entries
    /// since the last one; 0 never takes one (and never purges the log).
    pub snapshot_every: u64,
    /// Entries already in a snapshot kept in the log when it is purged, so
    /// a follower a little behind catches up from the log, not a snapshot.
    /// At least `snapshot_every`: then a follower that just installed a
    /// snapshot still finds the entries after it in the leader's log, even
    /// if the leader took its next snapshot during the install.
    pub log_keep: u64,
    /// How long sending one snapshot chunk may take; the last one includes
    /// the follower's restore of its TSDB from the snapshot.
    pub snapshot_chunk_timeout_ms: u64,
    /// Bytes of the snapshot stream one InstallSnapshot RPC carries.
    pub snapshot_chunk_bytes: u64,
    /// Where members' gRPC servers listen now, where that may differ from
    /// the address stored in the raft membership (which is the one they
    /// were added with): the address this replica names for the leader in
    /// "not leader" answers and in its status.
    pub addresses: BTreeMap<NodeId, String>,
}

impl ReplicaOptions {
    pub fn new(id: NodeId, member: Member, dir: PathBuf) -> Self {
        Self {
            id,
            member,
            dir,
            // openraft also bounds each AppendEntries RPC by the heartbeat
            // interval: it must cover a follower storing a full payload.
            heartbeat_ms: 200,
            election_timeout_min_ms: 800,
            election_timeout_max_ms: 1600,
            max_entry_samples: 50_000,
            max_inflight_entries: 8,
            max_queued_writes: 1024,
            snapshot_every: 1_000,
            log_keep: 1_000,
            snapshot_chunk_timeout_ms: 60_000,
            snapshot_chunk_bytes: 1 << 20,
            addresses: BTreeMap::new(),
        }
    }
}

/// A replica's raft view, for `/api/v1/status/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: NodeId,
    pub name: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// The leader's topology id (`ingester-N`), when known.
    pub leader_name: Option<String>,
    /// The leader's gRPC address as this replica knows it now (see
    /// [`ReplicaOptions::addresses`]), else its membership address.
    #[serde(default)]
    pub leader_addr: Option<String>,
    pub last_log_index: Option<u64>,
    pub commit_index: u64,
    pub applied_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub members: BTreeMap<NodeId, Member>,
    /// On the leader: entries each follower is behind the leader's log.
    pub lag: BTreeMap<NodeId, u64>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Last log index in this replica's current snapshot.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index are purged from this replica's log.
    #[serde(default)]
    pub purged_index: Option<u64>,
    #[serde(default)]
    pub snapshots_built: u64,
    /// Snapshots received from a leader and installed into the TSDB.
    #[serde(default)]
    pub snapshots_installed: u64,
    /// Milliseconds the newest install took (unpack and TSDB restore).
    #[serde(default)]
    pub last_snapshot_install_ms: u64,
    /// Reads this replica passed the barrier for as the leader (its own
    /// ReadIndex check) and as a follower (the leader's read index).
    #[serde(default)]
    pub leader_reads: u64,
    #[serde(default)]
    pub follower_reads: u64,
}

#[derive(Default)]
struct ReadStats {
    leader: AtomicU64,
    follower: AtomicU64,
}

struct Pending {
    write: Write,
    tx: oneshot::Sender<Result<WriteOutcome, Error>>,
}

/// One running replica. See the module overview.
pub struct Replica {
    id: NodeId,
    raft: Raft,
    db: RaftDb,
    fresh: bool,
    queue: mpsc::Sender<Pending>,
    snapshots: Arc<SnapshotStats>,
    /// Raft's transport, also for the ReadIndex RPC of follower reads.
    transport: Arc<dyn Transport>,
    addresses: BTreeMap<NodeId, String>,
    reads: ReadStats,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id).finish()
    }
}

fn not_leader(f: ForwardToLeader<NodeId, Member>) -> Error {
    Error::NotLeader { leader: f.leader_id, leader_addr: f.leader_node.map(|n| n.grpc) }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(other) => Error::Raft(other.to_string()),
        RaftError::Fatal(f) => Error::Raft(format!("raft stopped: {f}")),
    }
}

impl Replica {
    /// Starts the raft node over `tsdb`, whose database holds the raft log
    /// and state ([`crate::store`]). A replica that never was part of a
    /// group waits to be bootstrapped ([`Replica::bootstrap`]) or added by a
    /// leader. Snapshots are kept in `opts.dir/snapshots`.
    pub async fn start(
        opts: ReplicaOptions,
        tsdb: Arc<dyn SnapshotStorage>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Self>, Error> {
        if opts.dir.join("CURRENT").exists() {
            return Err(Error::RaftStorage(format!(
                "{} holds a raft database of an older Pharos, which kept the raft log apart from the TSDB; \
                 this one keeps it in the TSDB's database: empty this replica's data directory and start it \
                 again, and it catches up from the leader through a snapshot",
                opts.dir.display()
            )));
        }
        let db = RaftDb::new(tsdb.db(), tsdb.group_sync())?;
        let fresh = db.is_empty()?;
        let config = Config {
            cluster_name: "pharos-shard".into(),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_timeout_min_ms,
            election_timeout_max: opts.election_timeout_max_ms,
            snapshot_policy: match opts.snapshot_every {
                0 => SnapshotPolicy::Never,
                n => SnapshotPolicy::LogsSinceLast(n),
            },
            max_in_snapshot_log_to_keep: opts.log_keep,
            install_snapshot_timeout: opts.snapshot_chunk_timeout_ms,
            snapshot_max_chunk_size: opts.snapshot_chunk_bytes,
            // Entries per AppendEntries: small enough to store within a heartbeat.
            max_payload_entries: 16,
            ..Config::default()
        }
        .validate()
        .map_err(|e| Error::Raft(format!("raft config: {e}")))?;
        let snapshots = Arc::new(SnapshotStats::default());
        let sm = StateMachine::open(db.clone(), tsdb, opts.dir.join("snapshots"), snapshots.clone()).await?;
        let network = NetworkFactory { transport: transport.clone() };
        let raft = Raft::new(opts.id, Arc::new(config), network, LogStore::new(db.clone()), sm)
            .await
            .map_err(|e| Error::Raft(format!("cannot start raft: {e}")))?;
        let (queue, rx) = mpsc::channel(opts.max_queued_writes.max(1));
        tokio::spawn(coalesce(raft.clone(), rx, opts.max_entry_samples, opts.max_inflight_entries.max(1)));
        tracing::info!(id = opts.id, name = %opts.member.name, fresh, "raft replica started");
        Ok(Arc::new(Self {
            id: opts.id,
            raft,
            db,
            fresh,
            queue,
            snapshots,
            transport,
            addresses: opts.addresses,
            reads: ReadStats::default(),
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether the raft database was empty when this replica started.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Forms the group with `members` as voters. Only for a brand-new shard,
    /// on one replica: a replica that already holds raft state refuses.
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Member>) -> Result<(), Error> {
        if !self.fresh {
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(e)) => {
                tracing::info!(error = %e, "bootstrap skipped");
                Ok(())
            }
            Err(RaftError::Fatal(f)) => Err(Error::Raft(format!("raft stopped: {f}"))),
        }
    }

    /// The leader this replica knows of, if it is not itself.
    fn redirect(&self) -> Option<Error> {
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state == ServerState::Leader {
            return None;
        }
        let leader = m.current_leader;
        let leader_addr = leader.and_then(|l| self.address(l, m.membership_config.membership().get_node(&l)));
        Some(Error::NotLeader { leader, leader_addr })
    }

    /// Where member `id` listens now: [`ReplicaOptions::addresses`], else
    /// its membership address.
    fn address(&self, id: NodeId, member: Option<&Member>) -> Option<String> {
        self.addresses.get(&id).cloned().or_else(|| member.map(|m| m.grpc.clone()))
    }

    /// Replicates one tenant's batch; answers once it is committed by a
    /// quorum and applied here.
    pub async fn write(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        if let Some(e) = self.redirect() {
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        self.queue.send(Pending { write: Write::new(tenant, batch), tx }).await.map_err(|_| Error::Stopped)?;
        match rx.await {
            Ok(r) => r.map(Into::into),
            Err(_) => Err(Error::Raft("the write's entry was dropped".into())),
        }
    }

    /// Returns once a read of the local TSDB sees every write acknowledged
    /// before this call (ReadIndex on the leader); `NotLeader` elsewhere.
    pub async fn read_barrier(&self) -> Result<(), Error> {
        if let Some(e) = self.redirect() {
            return Err(e);
        }
        match tokio::time::timeout(READ_BARRIER_TIMEOUT, self.raft.ensure_linearizable()).await {
            Err(_) => Err(Error::Raft("leadership not confirmed by a quorum in time".into())),
            Ok(Ok(_)) => {
                self.reads.leader.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => Err(not_leader(f)),
            Ok(Err(RaftError::APIError(e))) => Err(Error::Raft(e.to_string())),
            Ok(Err(RaftError::Fatal(f))) => Err(Error::Raft(format!("raft stopped: {f}"))),
        }
    }

    /// Returns once a read of the local TSDB sees every write acknowledged
    /// before this call, on any replica: the leader runs
    /// [`Self::read_barrier`]; another replica asks the leader for its read
    /// index (the leader confirms its lead with a quorum) and waits until
    /// it applied that index itself. Fails when no leader is known or
    /// reachable, or the apply takes longer than the time left.
    pub async fn follower_read_barrier(&self) -> Result<(), Error> {
        let deadline = Instant::now() + FOLLOWER_READ_TIMEOUT;
        let (leader, member) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            match m.current_leader {
                _ if m.state == ServerState::Leader => (None, None),
                Some(l) if l == self.id => (None, None),
                None => return Err(Error::Raft("no leader known for a follower read".into())),
                Some(l) => {
                    let member = m.membership_config.membership().get_node(&l).cloned();
                    let member = member.ok_or_else(|| Error::Raft(format!("leader {l} is not a member")))?;
                    (Some(l), Some(member))
                }
            }
        };
        let (Some(leader), Some(member)) = (leader, member) else { return self.read_barrier().await };
        let index = request_read_index(&*self.transport, leader, &member, FOLLOWER_READ_TIMEOUT).await?;
        if let Some(index) = index {
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "follower read")
                .await
                .map_err(|e| Error::Raft(format!("read index {index} from leader {leader} not applied here: {e}")))?;
        }
        self.reads.follower.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Adds a replica: first as a learner that catches up, then as a voter.
    pub async fn add_replica(&self, id: NodeId, member: Member) -> Result<(), Error> {
        self.raft.add_learner(id, member, true).await.map_err(write_error)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Removes a replica from the group (it stops receiving the log).
    pub async fn remove_replica(&self, id: NodeId) -> Result<(), Error> {
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    pub fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let members: BTreeMap<NodeId, Member> = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
                    .collect()
            })
            .unwrap_or_default();
        let applied = m.last_applied.map(|l| l.index);
        ReplicaStatus {
            id: self.id,
            name: members.get(&self.id).map(|n| n.name.clone()).unwrap_or_default(),
            state: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            leader_name: m.current_leader.and_then(|l| members.get(&l).map(|n| n.name.clone())),
            leader_addr: m.current_leader.and_then(|l| self.address(l, members.get(&l))),
            last_log_index: m.last_log_index,
            commit_index: self.db.committed.load(Ordering::Relaxed).max(applied.unwrap_or(0)),
            applied_index: applied,
            voters,
            learners,
            members,
            lag,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            snapshots_built: self.snapshots.built.load(Ordering::Relaxed),
            snapshots_installed: self.snapshots.installed.load(Ordering::Relaxed),
            last_snapshot_install_ms: self.snapshots.last_install_ms.load(Ordering::Relaxed),
            leader_reads: self.reads.leader.load(Ordering::Relaxed),
            follower_reads: self.reads.follower.load(Ordering::Relaxed),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Takes queued writes into raft entries; see the module overview.
async fn coalesce(raft: Raft, mut rx: mpsc::Receiver<Pending>, max_samples: usize, inflight: usize) {
    let permits = Arc::new(Semaphore::new(inflight));
    while let Some(first) = rx.recv().await {
        // Waiting for a free slot lets more writes queue up behind `first`.
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let mut samples = first.write.samples();
        let mut batch = vec![first];
        while samples < max_samples {
            match rx.try_recv() {
                Ok(p) => {
                    samples += p.write.samples();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (writes, txs): (Vec<Write>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.tx)).unzip();
            match raft.client_write(Request { writes }).await {
                Ok(resp) => {
                    for (tx, outcome) in txs.into_iter().zip(resp.data.outcomes) {
                        let _ = tx.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let e = write_error(e);
                    for tx in txs {
                        let copy = match &e {
                            Error::NotLeader { leader, leader_addr } => {
                                Error::NotLeader { leader: *leader, leader_addr: leader_addr.clone() }
                            }
                            other => Error::Raft(other.to_string()),
                        };
                        let _ = tx.send(Err(copy));
                    }
                }
            }
        });
    }
}
