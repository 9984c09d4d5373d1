//! What a target's scrape loop remembers between scrapes, like Prometheus's
//! `scrapeCache`: for each series text of the body (`name{a="b"}` as
//! written), the label set that the target labels and metric relabeling
//! made of it (or that it was dropped), so a series seen before costs a hash
//! lookup instead of building, relabeling and checking its labels again;
//! and which series the last scrapes wrote, for staleness markers and
//! `scrape_series_added`.
//!
//! Each distinct label set has one slot, however many texts lead to it, so
//! the sets of series compared between scrapes are sets of label sets as
//! before. Pure: no I/O, no clock.

use std::collections::HashMap;

use pharos_model::Labels;

/// Where a series text leads.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// `None`: metric relabeling drops the series.
    slot: Option<u32>,
    /// The scrape that last met the text.
    last: u64,
}

#[derive(Debug)]
struct Slot {
    labels: Labels,
    /// The scrape that last met the series (to count it once per scrape).
    current: u64,
    /// The scrape that last tracked it for staleness.
    tracked: u64,
    /// The last successful scrape that wrote it.
    written: u64,
}

/// A series seen in the current scrape, by slot.
pub type SeriesId = u32;

/// The memory of one target's loop.
#[derive(Debug, Default)]
pub struct SeriesCache {
    by_text: HashMap<Box<str>, Entry>,
    by_labels: HashMap<Labels, SeriesId>,
    slots: Vec<Option<Slot>>,
    free: Vec<SeriesId>,
    /// The scrape being processed (from 1).
    iter: u64,
    /// The last successful scrape (0: none yet).
    last_ok: u64,
    /// Series met in this scrape, each once.
    seen: Vec<SeriesId>,
    /// Series tracked for staleness in this scrape, each once.
    tracked: Vec<SeriesId>,
    /// Series tracked by the last scrape: they get a staleness marker when
    /// a scrape no longer has them.
    previous: Vec<SeriesId>,
}

/// What a series text is known to lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Dropped,
    Series(SeriesId),
}

impl SeriesCache {
    /// Starts processing a scrape.
    pub fn begin(&mut self) {
        self.iter += 1;
        self.seen.clear();
        self.tracked.clear();
    }

    /// What `text` led to before, if it was met.
    pub fn lookup(&mut self, text: &str) -> Option<Known> {
        let iter = self.iter;
        let e = self.by_text.get_mut(text)?;
        e.last = iter;
        Some(e.slot.map_or(Known::Dropped, Known::Series))
    }

    /// Remembers that metric relabeling drops `text`.
    pub fn insert_dropped(&mut self, text: &str) {
        self.by_text.insert(text.into(), Entry { slot: None, last: self.iter });
    }

    /// Remembers that `text` leads to `labels`, and returns their series.
    pub fn insert(&mut self, text: &str, labels: Labels) -> SeriesId {
        let id = match self.by_labels.get(&labels) {
            Some(&id) => id,
            None => {
                let slot = Slot { labels: labels.clone(), current: 0, tracked: 0, written: u64::MAX };
                let id = match self.free.pop() {
                    Some(id) => {
                        if let Some(s) = self.slots.get_mut(id as usize) {
                            *s = Some(slot);
                        }
                        id
                    }
                    None => {
                        self.slots.push(Some(slot));
                        (self.slots.len() - 1) as SeriesId
                    }
                };
                self.by_labels.insert(labels, id);
                id
            }
        };
        self.by_text.insert(text.into(), Entry { slot: Some(id), last: self.iter });
        id
    }

    fn slot(&mut self, id: SeriesId) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// The labels of a series.
    pub fn labels(&self, id: SeriesId) -> Option<&Labels> {
        self.slots.get(id as usize).and_then(Option::as_ref).map(|s| &s.labels)
    }

    /// Notes that this scrape writes series `id`; `tracked` if its sample
    /// gets staleness tracking (no explicit timestamp).
    pub fn write(&mut self, id: SeriesId, tracked: bool) {
        let iter = self.iter;
        let Some(s) = self.slot(id) else { return };
        let first = s.current != iter;
        s.current = iter;
        let track = tracked && s.tracked != iter;
        if track {
            s.tracked = iter;
        }
        if first {
            self.seen.push(id);
        }
        if track {
            self.tracked.push(id);
        }
    }

    /// Ends the scrape: returns `scrape_series_added` (series written that
    /// the last successful scrape did not write; 0 for a failed scrape)
    /// and the label sets that get a staleness marker (those the last
    /// scrape tracked and this one does not; all of them when it failed).
    /// A successful scrape forgets the texts it did not meet.
    pub fn finish(&mut self, ok: bool) -> (usize, Vec<Labels>) {
        let iter = self.iter;
        let mut stale = Vec::new();
        for &id in &self.previous {
            if let Some(s) = self.slots.get(id as usize).and_then(Option::as_ref)
                && (!ok || s.tracked != iter)
            {
                stale.push(s.labels.clone());
            }
        }
        if !ok {
            self.previous.clear();
            return (0, stale);
        }
        let (last_ok, seen) = (self.last_ok, std::mem::take(&mut self.seen));
        let mut added = 0;
        for &id in &seen {
            if let Some(s) = self.slot(id) {
                added += usize::from(s.written != last_ok);
                s.written = iter;
            }
        }
        self.seen = seen;
        self.last_ok = iter;
        std::mem::swap(&mut self.previous, &mut self.tracked);
        self.evict();
        (added, stale)
    }

    /// Drops the texts this scrape did not meet and the series no text leads to.
    fn evict(&mut self) {
        let iter = self.iter;
        self.by_text.retain(|_, e| e.last == iter);
        let mut live = vec![false; self.slots.len()];
        for id in self.by_text.values().filter_map(|e| e.slot) {
            if let Some(l) = live.get_mut(id as usize) {
                *l = true;
            }
        }
        for (id, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_some() && !live[id] {
                if let Some(s) = slot.take() {
                    self.by_labels.remove(&s.labels);
                }
                self.free.push(id as SeriesId);
            }
        }
    }

    /// The label sets the last scrape tracked, taken (the target is gone).
    pub fn take_previous(&mut self) -> Vec<Labels> {
        let previous = std::mem::take(&mut self.previous);
        previous.iter().filter_map(|&id| self.labels(id).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &str) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("x", v)])
    }

    /// One scrape of `(text, value of x, tracked)`.
    fn scrape(c: &mut SeriesCache, series: &[(&str, &str, bool)], ok: bool) -> (usize, Vec<Labels>) {
        c.begin();
        for (text, x, tracked) in series {
            let id = match c.lookup(text) {
                Some(Known::Series(id)) => id,
                Some(Known::Dropped) => continue,
                None => c.insert(text, l(x)),
            };
            c.write(id, *tracked);
        }
        c.finish(ok)
    }

    #[test]
    fn added_and_stale_follow_label_sets() {
        let mut c = SeriesCache::default();
        assert_eq!(scrape(&mut c, &[("a", "1", true), ("b", "2", true)], true), (2, vec![]));
        assert_eq!(scrape(&mut c, &[("a", "1", true), ("b", "2", true)], true), (0, vec![]));
        // Another text for the same labels is the same series.
        assert_eq!(scrape(&mut c, &[("a2", "1", true), ("c", "3", true)], true), (1, vec![l("2")]));
        assert_eq!(c.by_text.len(), 2, "texts not met are forgotten");
        assert_eq!(c.by_labels.len(), 2);
        // A failed scrape marks every tracked series stale and adds nothing.
        assert_eq!(scrape(&mut c, &[("a2", "1", true)], false), (0, vec![l("1"), l("3")]));
        // Added counts against the last successful scrape.
        assert_eq!(scrape(&mut c, &[("a2", "1", true), ("b", "2", true)], true), (1, vec![]));
    }

    #[test]
    fn untracked_series_get_no_markers_and_dropped_texts_are_remembered() {
        let mut c = SeriesCache::default();
        c.begin();
        c.insert_dropped("d");
        let id = c.insert("a", l("1"));
        c.write(id, false);
        c.write(id, false);
        assert_eq!(c.finish(true), (1, vec![]));
        assert_eq!(scrape(&mut c, &[("b", "2", true)], true), (1, vec![]));
        c.begin();
        assert_eq!(c.lookup("b"), Some(Known::Series(1)));
        assert_eq!(c.lookup("zz"), None);
        assert_eq!(c.take_previous(), vec![l("2")]);
        // Freed slots are reused.
        let mut c = SeriesCache::default();
        scrape(&mut c, &[("a", "1", true)], true);
        scrape(&mut c, &[("b", "2", true)], true);
        assert_eq!(c.slots.len(), 2);
        scrape(&mut c, &[("c", "3", true)], true);
        assert_eq!(c.slots.len(), 2);
        assert_eq!(c.labels(0), Some(&l("3")));
    }
}
