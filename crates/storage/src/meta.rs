//! The question a metadata call (series, label names, label values) asks,
//! and the pure steps that turn matching label sets into its answer.

use std::collections::BTreeSet;

use pharos_model::{Labels, Matcher};

/// Which series a metadata call looks at and how much it returns: the
/// series matching every matcher that have at least one sample in
/// `[mint, maxt]` (as Prometheus), with the sorted answer cut to `limit`
/// items (0 for no limit).
#[derive(Debug, Clone)]
pub struct MetaQuery {
    pub matchers: Vec<Matcher>,
    pub mint: i64,
    pub maxt: i64,
    pub limit: usize,
}

impl Default for MetaQuery {
    /// Every series, the whole time range, no limit.
    fn default() -> Self {
        Self { matchers: Vec::new(), mint: i64::MIN, maxt: i64::MAX, limit: 0 }
    }
}

impl MetaQuery {
    /// The series matching `matchers`, the whole time range, no limit.
    pub fn matching(matchers: &[Matcher]) -> Self {
        Self { matchers: matchers.to_vec(), ..Self::default() }
    }

    /// Whether `labels` pass every matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches_labels(labels))
    }

    /// Cuts a sorted answer to the limit.
    pub fn truncate<T>(&self, mut sorted: Vec<T>) -> Vec<T> {
        if self.limit > 0 {
            sorted.truncate(self.limit);
        }
        sorted
    }

    /// The answer of `series`: the label sets, sorted and limited.
    pub fn series_answer(&self, mut labels: Vec<Labels>) -> Vec<Labels> {
        labels.sort();
        labels.dedup();
        self.truncate(labels)
    }

    /// The answer of `label_names` over these label sets.
    pub fn names_answer<'a>(&self, labels: impl IntoIterator<Item = &'a Labels>) -> Vec<String> {
        let names: BTreeSet<&str> = labels.into_iter().flat_map(|l| l.iter().map(|l| l.name.as_str())).collect();
        self.truncate(names.into_iter().map(str::to_string).collect())
    }

    /// The answer of `label_values` of `name` over these label sets.
    pub fn values_answer<'a>(&self, name: &str, labels: impl IntoIterator<Item = &'a Labels>) -> Vec<String> {
        let values: BTreeSet<&str> = labels.into_iter().filter_map(|l| l.get(name)).collect();
        self.truncate(values.into_iter().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_then_limited() {
        let ls = [Labels::from_pairs(&[("__name__", "b"), ("x", "2")]), Labels::from_pairs(&[("__name__", "a")])];
        let q = MetaQuery { limit: 1, ..MetaQuery::default() };
        assert_eq!(q.series_answer(ls.to_vec()), vec![ls[1].clone()]);
        assert_eq!(q.names_answer(&ls), vec!["__name__"]);
        assert_eq!(q.values_answer("__name__", &ls), vec!["a"]);
        let all = MetaQuery::default();
        assert_eq!(all.names_answer(&ls), vec!["__name__", "x"]);
        assert_eq!(all.values_answer("x", &ls), vec!["2"]);
        assert!(all.values_answer("y", &ls).is_empty());
    }
}
