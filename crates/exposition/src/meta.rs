//! Collects `HELP`/`TYPE`/`UNIT` lines into one [`MetricMeta`] per family.

use std::collections::HashMap;

use crate::{MetricMeta, MetricType};

/// Merges metadata lines per family, keeping families in order of first
/// appearance. Keys borrow from the scrape body, so only new families
/// allocate.
#[derive(Default)]
pub(crate) struct MetaBuilder<'a> {
    index: HashMap<&'a str, usize>,
    metas: Vec<MetricMeta>,
}

impl<'a> MetaBuilder<'a> {
    pub(crate) fn help(&mut self, family: &'a str, help: String) {
        self.update(family, |m| m.help = help);
    }

    pub(crate) fn kind(&mut self, family: &'a str, kind: MetricType) {
        self.update(family, |m| m.kind = kind);
    }

    pub(crate) fn unit(&mut self, family: &'a str, unit: &str) {
        self.update(family, |m| unit.clone_into(&mut m.unit));
    }

    pub(crate) fn finish(self) -> Vec<MetricMeta> {
        self.metas
    }

    fn update(&mut self, family: &'a str, f: impl FnOnce(&mut MetricMeta)) {
        let next = self.metas.len();
        let idx = *self.index.entry(family).or_insert(next);
        if idx == next {
            self.metas.push(MetricMeta {
                family: family.to_owned(),
                kind: MetricType::Unknown,
                help: String::new(),
                unit: String::new(),
            });
        }
        if let Some(meta) = self.metas.get_mut(idx) {
            f(meta);
        }
    }
}
