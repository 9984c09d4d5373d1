//! Label matchers with Prometheus semantics: regexes are fully anchored and a
//! missing label matches as the empty string.

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid regular expression {pattern:?} for label {name:?}: {reason}")]
    BadRegex { name: String, pattern: String, reason: String },
}

/// One label matcher, e.g. `job=~"api|web"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Self, MatcherError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                MatcherError::BadRegex { name: name.to_string(), pattern: value.to_string(), reason: e.to_string() }
            })?),
            _ => None,
        };
        Ok(Self { name: name.to_string(), op, value: value.to_string(), re })
    }

    pub fn equal(name: &str, value: &str) -> Self {
        Self { name: name.to_string(), op: MatchOp::Equal, value: value.to_string(), re: None }
    }

    /// Does a label value (empty when absent) satisfy this matcher?
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// True when a series lacking the label would be selected.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &crate::Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }

    /// The operator as PromQL writes it.
    pub fn op_str(&self) -> &'static str {
        match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored() {
        let m = Matcher::new(MatchOp::Regex, "job", "ap.").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("xapi"));
        assert!(!m.matches("apix"));
    }

    #[test]
    fn empty_matching() {
        assert!(Matcher::new(MatchOp::Regex, "x", ".*").unwrap().matches_empty());
        assert!(Matcher::new(MatchOp::NotEqual, "x", "a").unwrap().matches_empty());
        assert!(!Matcher::new(MatchOp::NotRegex, "x", "").unwrap().matches_empty());
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let e = Matcher::new(MatchOp::Regex, "job", "(").unwrap_err();
        assert!(e.to_string().contains("job"));
    }
}
