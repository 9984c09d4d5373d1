//! Label sets: sorted, unique names, compared and hashed canonically.

use std::fmt;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A label set, always sorted by name with no duplicate names and no empty
/// values (a label with an empty value is the same as an absent label).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order; later duplicates win and
    /// empty values are dropped.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        // keep the last of each name
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::new(pairs.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Sets (or with an empty value removes) one label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label { name: name.to_string(), value: value.to_string() }),
        }
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(self.0.iter().filter(|l| !names.contains(&l.name.as_str())).cloned().collect())
    }

    /// Canonical encoding: for each label, name, 0xff, value, 0xff.
    /// Label names and values are UTF-8 and never contain 0xff.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        for l in &self.0 {
            buf.extend_from_slice(l.name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(l.value.as_bytes());
            buf.push(0xff);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(&mut buf);
        buf
    }

    /// Inverse of [`Labels::encode`]; `None` when the bytes are not a valid encoding.
    pub fn decode(bytes: &[u8]) -> Option<Labels> {
        let mut parts = bytes.split(|b| *b == 0xff);
        let mut out = Vec::new();
        loop {
            let name = parts.next()?;
            if name.is_empty() {
                // trailing separator ends the encoding
                return parts.next().is_none().then(|| Labels::new(out));
            }
            let value = parts.next()?;
            out.push(Label {
                name: String::from_utf8(name.to_vec()).ok()?,
                value: String::from_utf8(value.to_vec()).ok()?,
            });
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            write!(f, "{name}")?;
        }
        write!(f, "{{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Labels::new(iter.into_iter().map(|(name, value)| Label { name, value }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduped_and_empty_values_dropped() {
        let l = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("c", ""), ("b", "3")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn encode_roundtrip() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a b"), ("x", "ü")]);
        assert_eq!(Labels::decode(&l.encode()), Some(l));
        assert_eq!(Labels::decode(&[]), Some(Labels::default()));
        assert_eq!(Labels::decode(b"abc"), None);
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        assert_eq!(l.to_string(), r#"up{job="x"}"#);
    }

    #[test]
    fn set_inserts_replaces_and_removes() {
        let mut l = Labels::from_pairs(&[("b", "2")]);
        l.set("a", "1");
        l.set("b", "3");
        assert_eq!(l.to_string(), r#"{a="1", b="3"}"#);
        l.set("a", "");
        assert_eq!(l.to_string(), r#"{b="3"}"#);
    }
}
