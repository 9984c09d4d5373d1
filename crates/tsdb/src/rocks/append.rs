//! The write path, in three steps:
//!
//! 1. [`RocksStorage::assign_ids`]: each series of the batch gets the id of
//!    its series in the head, or a new one (within the tenant's series
//!    limit), or the reason its labels are refused;
//! 2. [`classify`]: a pure function decides for every sample whether it is
//!    stored, an exact duplicate or rejected (too old, out of order, ...),
//!    seeing what earlier series of the same batch stored;
//! 3. [`RocksStorage::commit`]: the new series, their postings and one
//!    write-ahead log record go to RocksDB in ONE atomic batch, and only then
//!    the samples go into the head (chunks cut full are written after).
//!
//! The write is not synced under the head lock: once the lock is let go,
//! the append waits for a sync of the database's log that covers it, shared
//! with the appends that wrote meanwhile (group commit, `durable.rs`).

use pharos_model::{Labels, Sample};
use pharos_storage::{AppendResult, RejectReason, Rejection, SeriesSamples, admit, reject_all, validate_labels};
use rocksdb::WriteBatch;

use super::head::{Head, IdMap, series_key};
use super::retention::now_ms;
use super::{CF_SERIES, CF_WAL, RocksStorage, keys, wal};
use crate::Error;

/// A series this batch creates.
struct Pending {
    id: u64,
    hash: u64,
    /// `tenant 0xff labels`: the series table's value.
    key: Vec<u8>,
}

/// The series ids of a batch (step 1), in batch order.
struct Assigned {
    ids: Vec<Result<u64, RejectReason>>,
    /// The series among them that are new, by ascending id.
    new: Vec<Pending>,
}

/// The samples of a batch to store, per series id in batch order (step 2).
type Entries = Vec<(u64, Vec<Sample>)>;

impl RocksStorage {
    /// [`pharos_storage::Storage::append`]: the three steps of the module
    /// overview, under the head lock.
    pub(super) fn append_batch(&self, tenant: &str, batch: &[SeriesSamples]) -> Result<AppendResult, Error> {
        let min_valid = self.opts.retention_ms.map(|r| now_ms().saturating_sub(r));
        let mut head = self.head.lock();
        let assigned = self.assign_ids(&head, tenant, batch);
        let (res, entries) = classify(batch, &assigned.ids, |id| head.series.get(&id).and_then(|s| s.last), min_valid);
        let ticket = self.commit(&mut head, tenant, assigned.new, &entries)?;
        drop(head);
        self.durable.wait(ticket)?;
        self.count(&res);
        Ok(res)
    }

    /// Step 1: the id of every series of the batch.
    fn assign_ids(&self, head: &Head, tenant: &str, batch: &[SeriesSamples]) -> Assigned {
        let mut new: Vec<Pending> = Vec::new();
        // hash of `tenant 0xff labels` -> index in `new` of the first series with it
        let mut new_by_hash: IdMap<usize> = IdMap::default();
        let mut next_id = head.next_id;
        let tenant_series = head.tenant_series(tenant);
        let mut key = Vec::with_capacity(256);
        let mut ids = Vec::with_capacity(batch.len());
        for s in batch {
            if let Some(reason) = self.check_labels(&s.labels) {
                ids.push(Err(reason));
                continue;
            }
            let hash = series_key(tenant, &s.labels, &mut key);
            if let Some(id) = head.lookup(hash, &key) {
                ids.push(Ok(id));
                continue;
            }
            let earlier = match new_by_hash.get(&hash).and_then(|i| new.get(*i)) {
                Some(p) if p.key == key => Some(p.id),
                // a 64-bit hash collision within one batch: rare enough to scan
                Some(_) => new.iter().find(|p| p.hash == hash && p.key == key).map(|p| p.id),
                None => None,
            };
            if let Some(id) = earlier {
                ids.push(Ok(id));
                continue;
            }
            if self.opts.max_series_per_tenant.is_some_and(|max| tenant_series + new.len() >= max) {
                ids.push(Err(RejectReason::SeriesLimit));
                continue;
            }
            let id = next_id;
            next_id += 1;
            new_by_hash.entry(hash).or_insert(new.len());
            new.push(Pending { id, hash, key: key.clone() });
            ids.push(Ok(id));
        }
        Assigned { ids, new }
    }

    fn check_labels(&self, labels: &Labels) -> Option<RejectReason> {
        if !validate_labels(labels) {
            return Some(RejectReason::InvalidLabels);
        }
        let too_long = labels
            .iter()
            .any(|l| l.name.len() > self.opts.max_label_name_len || l.value.len() > self.opts.max_label_value_len);
        too_long.then_some(RejectReason::LabelTooLong)
    }

    /// Step 3: writes `entries` and puts them into the head. A new series is
    /// created only if it stores something. On a failed write nothing is
    /// stored and the head is as before. Returns the group-commit ticket to
    /// wait on before the append is durable: its own write's, or, when it
    /// wrote nothing (duplicates only), one covering every earlier write;
    /// 0 with an external log (the caller syncs its own log).
    fn commit(&self, head: &mut Head, tenant: &str, mut new: Vec<Pending>, entries: &Entries) -> Result<u64, Error> {
        // Room for the log record (16 bytes a sample) without regrowing.
        let samples: usize = entries.iter().map(|(_, s)| s.len()).sum();
        let mut wb = WriteBatch::with_capacity_bytes(64 + 16 * samples + 16 * entries.len());
        let stored: IdMap<()> = entries.iter().map(|(id, _)| (*id, ())).collect();
        new.retain(|p| stored.contains_key(&p.id));
        let series_cf = self.cf(CF_SERIES)?;
        for p in new {
            wb.put_cf(series_cf, keys::series_key(p.id), &p.key);
            head.insert(p.id, tenant, p.hash, p.key[tenant.len() + 1..].into());
        }
        for (id, samples) in entries {
            self.index_partitions(head, *id, samples, &mut wb)?;
        }
        // With an external log only new series and postings are written here
        // (mostly nothing); otherwise the log record makes the samples durable.
        if !self.opts.external_log && !entries.is_empty() {
            wb.put_cf(self.cf(CF_WAL)?, head.next_seq.to_be_bytes(), wal::encode(entries));
        }
        let mut wrote = false;
        if !wb.is_empty() {
            if let Err(e) = self.db.write(wb) {
                // Nothing was stored: forget the series this batch created,
                // and make the others write their postings again.
                for (id, _) in entries {
                    match head.series.get_mut(id) {
                        Some(s) if s.last.is_none() => head.remove(*id),
                        Some(s) => s.indexed = None,
                        None => {}
                    }
                }
                return Err(e.into());
            }
            if !self.opts.external_log {
                head.next_seq += 1;
                wrote = true;
            }
        }
        let ticket = match (self.opts.external_log, wrote) {
            (true, _) => 0,
            (false, true) => self.durable.issue(),
            (false, false) => self.durable.current(),
        };
        let mut cut = WriteBatch::default();
        for (id, samples) in entries {
            self.apply(head, *id, samples, &mut cut)?;
        }
        if !cut.is_empty() {
            self.db.write(cut)?;
        }
        Ok(ticket)
    }
}

/// Step 2, pure: what becomes of every sample of `batch`, given the series
/// ids of step 1, the newest stored sample of a series (`last_of`) and the
/// oldest time retention still takes. A series that appears twice sees
/// what its first appearance stored. Returns the result to report and the
/// samples to store, per series id in batch order.
fn classify(
    batch: &[SeriesSamples],
    ids: &[Result<u64, RejectReason>],
    last_of: impl Fn(u64) -> Option<Sample>,
    min_valid: Option<i64>,
) -> (AppendResult, Entries) {
    let mut res = AppendResult::default();
    let mut entries: Entries = Vec::with_capacity(batch.len());
    // newest sample per series as this batch sees it
    let mut lasts: IdMap<Option<Sample>> = IdMap::default();
    for (s, id) in batch.iter().zip(ids) {
        let id = match id {
            Ok(id) => *id,
            Err(reason) => {
                res.rejected.push(reject_all(s, *reason));
                continue;
            }
        };
        let in_retention = |x: &Sample| min_valid.is_none_or(|m| x.t >= m);
        // Splitting allocates, and almost every batch is all in retention.
        let split: (Vec<Sample>, Vec<Sample>);
        let (samples, too_old): (&[Sample], &[Sample]) = if s.samples.iter().all(in_retention) {
            (&s.samples, &[])
        } else {
            split = s.samples.iter().partition(|x| in_retention(x));
            (&split.0, &split.1)
        };
        if let Some(first) = too_old.first() {
            res.rejected.push(Rejection {
                labels: s.labels.clone(),
                reason: RejectReason::TooOld,
                count: too_old.len() as u64,
                first_t: first.t,
            });
        }
        let last = *lasts.entry(id).or_insert_with(|| last_of(id));
        let (fresh, dups, rejected) = admit(&s.labels, last, samples);
        res.accepted += fresh.len() as u64 + dups;
        res.duplicates += dups;
        res.rejected.extend(rejected);
        if let Some(l) = fresh.last() {
            lasts.insert(id, Some(*l));
            entries.push((id, fresh));
        }
    }
    (res, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, samples: &[(i64, f64)]) -> SeriesSamples {
        SeriesSamples {
            labels: Labels::from_pairs(&[("__name__", name)]),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn classify_sees_earlier_series_of_the_batch_and_stored_samples() {
        let batch = [
            series("a", &[(10, 1.0), (20, 2.0)]),
            series("bad", &[(5, 1.0), (6, 1.0)]),
            series("a", &[(20, 2.0), (15, 0.0), (30, 3.0)]),
            series("b", &[(1, 1.0), (100, 1.0)]),
        ];
        let ids = [Ok(7), Err(RejectReason::SeriesLimit), Ok(7), Ok(8)];
        // series 8 has a stored sample at 100; 7 none
        let last_of = |id| (id == 8).then(|| Sample::new(100, 1.0));
        let (res, entries) = classify(&batch, &ids, last_of, None);
        assert_eq!((res.accepted, res.duplicates), (5, 2));
        let reasons: Vec<_> = res.rejected.iter().map(|r| (r.reason, r.count, r.first_t)).collect();
        assert_eq!(
            reasons,
            vec![
                (RejectReason::SeriesLimit, 2, 5),
                (RejectReason::OutOfOrder, 1, 15),
                (RejectReason::OutOfOrder, 1, 1)
            ]
        );
        let stored: Vec<(u64, Vec<i64>)> =
            entries.iter().map(|(id, s)| (*id, s.iter().map(|x| x.t).collect())).collect();
        assert_eq!(stored, vec![(7, vec![10, 20]), (7, vec![30])]);
    }

    #[test]
    fn classify_rejects_what_retention_no_longer_takes() {
        let batch = [series("a", &[(5, 1.0), (50, 1.0), (60, 1.0)])];
        let (res, entries) = classify(&batch, &[Ok(1)], |_| None, Some(40));
        assert_eq!(res.accepted, 2);
        assert_eq!(
            (res.rejected[0].reason, res.rejected[0].count, res.rejected[0].first_t),
            (RejectReason::TooOld, 1, 5)
        );
        assert_eq!(entries[0].1.len(), 2);
    }
}
