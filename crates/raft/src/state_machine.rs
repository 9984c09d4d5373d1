//! The state machine: committed entries applied to the TSDB.
//!
//! Applying a [`Request`] appends each of its writes to the TSDB, in log
//! order, and answers one [`WriteOutcome`] per write; then the last applied
//! log id and the membership are stored in the raft database. The TSDB keeps
//! its own write-ahead log, so an entry applied just before a crash but not
//! yet recorded as applied is applied again after the restart: its samples
//! are then exact duplicates, which the TSDB drops. Applying is idempotent.
//!
//! Snapshots are not built yet: the log is never purged (snapshot policy
//! `Never`), so a new or wiped replica catches up by replaying the log.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use pharos_tsdb::Storage;
use rocksdb::WriteBatch;

use crate::Error;
use crate::store::{KEY_APPLIED, KEY_MEMBERSHIP, RaftDb, blocking};
use crate::types::{Entry, LogId, Member, NodeId, Response, StorageError, StoredMembership, TypeConfig};

pub struct StateMachine {
    db: RaftDb,
    tsdb: Arc<dyn Storage>,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachine {
    pub fn open(db: RaftDb, tsdb: Arc<dyn Storage>) -> Result<Self, Error> {
        let applied = db.get::<Option<LogId>>(KEY_APPLIED)?.flatten();
        let membership = db.get::<StoredMembership>(KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok(Self { db, tsdb, applied, membership })
    }
}

fn sm_err(e: Error) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e)).into()
}

/// Builds no snapshot: see the module overview.
pub struct NoSnapshots;

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(StorageIOError::write_snapshot(None, AnyError::error("snapshots are not supported yet")).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else { return Ok(Vec::new()) };
        let mut membership = self.membership.clone();
        for e in &entries {
            if let EntryPayload::Membership(m) = &e.payload {
                membership = StoredMembership::new(Some(e.log_id), m.clone());
            }
        }
        let (db, tsdb, m2) = (self.db.clone(), self.tsdb.clone(), membership.clone());
        let responses = blocking(move || {
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let mut resp = Response::default();
                if let EntryPayload::Normal(req) = e.payload {
                    for w in &req.writes {
                        resp.outcomes.push(tsdb.append(&w.tenant, &w.to_batch())?.into());
                    }
                }
                out.push(resp);
            }
            let mut b = WriteBatch::default();
            db.put(&mut b, KEY_APPLIED, &Some(last))?;
            db.put(&mut b, KEY_MEMBERSHIP, &m2)?;
            db.write(b, false)?;
            Ok(out)
        })
        .await
        .map_err(sm_err)?;
        self.applied = Some(last);
        self.membership = membership;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, Member>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(StorageIOError::write_snapshot(None, AnyError::error("snapshots are not supported yet")).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
