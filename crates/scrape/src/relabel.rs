//! Relabeling (`relabel_configs`, `metric_relabel_configs`) with the
//! semantics of Prometheus 2.42's `model/relabel`: pure functions over a
//! label set, no I/O.
//!
//! A rule is validated while it is deserialized, so a bad rule or regex is
//! reported by `serde_yaml` with its path (`scrape_configs[0].relabel_configs[1].regex`)
//! and its line. Regexes are fully anchored (`^(?:...)$`); replacements and
//! templated target labels expand `$1`, `${1}` and `${name}` exactly as Go's
//! `Regexp.Expand` does.

use std::sync::LazyLock;

use pharos_model::Labels;
use regex::{Captures, Regex};
use serde::{Deserialize, Deserializer};

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Case-insensitive, as Prometheus reads it.
    fn parse(s: &str) -> Result<Action, String> {
        let lower = s.to_lowercase();
        Action::ALL.into_iter().find(|a| a.as_str() == lower).ok_or_else(|| format!("unknown relabel action {s:?}"))
    }
}

/// A relabel regex: the configured text, compiled as `^(?:text)$`.
#[derive(Debug, Clone)]
pub struct RelabelRegex {
    source: String,
    re: Regex,
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<Self, String> {
        let re = Regex::new(&format!("^(?:{source})$")).map_err(|e| {
            // The regex crate's message spans lines; keep its last one.
            let text = e.to_string();
            let why = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
            format!("invalid regex {source:?}: {}", why.trim_start_matches("error: "))
        })?;
        Ok(RelabelRegex { source: source.to_string(), re })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl<'de> Deserialize<'de> for RelabelRegex {
    /// Compiles while the scalar is read, so an error carries the line of
    /// the `regex` field itself.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RelabelRegex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RelabelRegex, E> {
                RelabelRegex::new(s).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RelabelRegex, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RelabelRegex, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<RelabelRegex, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RelabelRegex, E> {
                self.visit_str(&b.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML scalar read as text, as Go's YAML reads a number or a bool into a
/// string field (`regex: 200`).
pub(crate) fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde_yaml::Value;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a string")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    source_labels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "scalar")]
    separator: Option<String>,
    regex: Option<RelabelRegex>,
    modulus: Option<u64>,
    #[serde(default, deserialize_with = "scalar")]
    target_label: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    replacement: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    action: Option<String>,
}

/// One validated relabel rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: RelabelRegex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// A target label that may hold `$` references (Prometheus's `relabelTarget`).
static RELABEL_TARGET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$").expect("constant regex")
});

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's label name rule.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl TryFrom<RawRule> for RelabelConfig {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        use Action::*;
        let action = match &raw.action {
            None => Replace,
            Some(s) => Action::parse(s)?,
        };
        if let Some(bad) = raw.source_labels.iter().flatten().find(|n| !is_valid_label_name(n)) {
            return Err(format!("{bad:?} is not a valid label name"));
        }
        let regex = match raw.regex.clone() {
            Some(r) => r,
            None => RelabelRegex::new(DEFAULT_REGEX)?,
        };
        let c = RelabelConfig {
            source_labels: raw.source_labels.clone().unwrap_or_default(),
            separator: raw.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            target_label: raw.target_label.clone().unwrap_or_default(),
            replacement: raw.replacement.clone().unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        };
        let a = action.as_str();
        let t = &c.target_label;
        if c.modulus == 0 && action == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target = matches!(action, Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual);
        if needs_target && t.is_empty() {
            return Err(format!("relabel configuration for {a} action requires 'target_label' value"));
        }
        let plain_target = matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual | HashMod);
        let bad_target = match action {
            Replace if t.contains('$') => !RELABEL_TARGET.is_match(t),
            Replace => !is_valid_label_name(t),
            _ => plain_target && !is_valid_label_name(t),
        };
        if bad_target {
            return Err(format!("{t:?} is invalid 'target_label' for {a} action"));
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual) && c.replacement != DEFAULT_REPLACEMENT {
            return Err(format!("'replacement' can not be set for {a} action"));
        }
        if action == LabelMap && !RELABEL_TARGET.is_match(&c.replacement) {
            return Err(format!("{:?} is invalid 'replacement' for {a} action", c.replacement));
        }
        let other_than_defaults = || {
            c.modulus != 0 || c.separator != ";" || c.replacement != DEFAULT_REPLACEMENT || !c.target_label.is_empty()
        };
        if matches!(action, KeepEqual | DropEqual)
            && (raw.regex.is_some() || c.modulus != 0 || c.separator != ";" || c.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(format!("{a} action requires only 'source_labels' and `target_label`, and no other fields"));
        }
        if matches!(action, LabelDrop | LabelKeep) && (raw.source_labels.is_some() || other_than_defaults()) {
            return Err(format!("{a} action requires only 'regex', and no other fields"));
        }
        Ok(c)
    }
}

impl RelabelConfig {
    /// Applies the rule to `lb`; false when the rule drops the label set.
    fn apply(&self, lb: &mut Labels) -> bool {
        let val = self
            .source_labels
            .iter()
            .map(|n| lb.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(self.separator.as_str());
        let re = &self.regex.re;
        match self.action {
            Action::Drop => return !re.is_match(&val),
            Action::Keep => return re.is_match(&val),
            Action::DropEqual => return lb.get(&self.target_label).unwrap_or("") != val,
            Action::KeepEqual => return lb.get(&self.target_label).unwrap_or("") == val,
            Action::Replace => {
                let Some(caps) = re.captures(&val) else { return true };
                let target = expand(re, &caps, &self.target_label);
                if !is_valid_label_name(&target) {
                    lb.set(&self.target_label, "");
                    return true;
                }
                let res = expand(re, &caps, &self.replacement);
                if res.is_empty() {
                    // As Prometheus 2.42: the unexpanded name is deleted.
                    lb.set(&self.target_label, "");
                } else {
                    lb.set(&target, &res);
                }
            }
            Action::Lowercase => lb.set(&self.target_label, &val.to_lowercase()),
            Action::Uppercase => lb.set(&self.target_label, &val.to_uppercase()),
            Action::HashMod => {
                let sum = crate::md5::md5(val.as_bytes());
                let mut last8 = [0u8; 8];
                last8.copy_from_slice(&sum[8..]);
                let m = u64::from_be_bytes(last8) % self.modulus;
                lb.set(&self.target_label, &m.to_string());
            }
            Action::LabelMap => {
                for l in lb.clone().iter() {
                    if let Some(caps) = re.captures(&l.name) {
                        lb.set(&expand(re, &caps, &self.replacement), &l.value);
                    }
                }
            }
            Action::LabelDrop | Action::LabelKeep => {
                let drop_matching = self.action == Action::LabelDrop;
                for l in lb.clone().iter() {
                    if re.is_match(&l.name) == drop_matching {
                        lb.set(&l.name, "");
                    }
                }
            }
        }
        true
    }
}

/// Applies `rules` in order; `None` when one of them drops the label set.
pub fn process(labels: &Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    let mut lb = labels.clone();
    rules.iter().all(|r| r.apply(&mut lb)).then_some(lb)
}

/// Go's `Regexp.Expand`: `$$` is `$`; `$name` takes the longest run of
/// letters, digits and `_`; `${name}` is braced; a number names a group by
/// index (no leading zeros), anything else a named group; a missing or
/// unmatched group expands to nothing; a malformed `$` stays literal.
pub fn expand(re: &Regex, caps: &Captures<'_>, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len = body.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(body.len());
        let closed = !braced || body[len..].starts_with('}');
        if len == 0 || !closed {
            out.push('$');
            continue;
        }
        let name = &body[..len];
        rest = &body[len + usize::from(braced)..];
        let by_index = name.bytes().all(|b| b.is_ascii_digit()) && !(name.len() > 1 && name.starts_with('0'));
        let group = if by_index {
            name.parse::<usize>().ok().and_then(|n| caps.get(n))
        } else if re.capture_names().flatten().any(|n| n == name) {
            caps.name(name)
        } else {
            None
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<RelabelConfig> {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn err(yaml: &str) -> String {
        serde_yaml::from_str::<Vec<RelabelConfig>>(yaml).unwrap_err().to_string()
    }

    fn run(yaml: &str, input: &[(&str, &str)]) -> Option<String> {
        process(&Labels::from_pairs(input), &rules(yaml)).map(|l| l.to_string())
    }

    #[test]
    fn defaults_are_prometheus_defaults() {
        let r = &rules("- target_label: x")[0];
        assert_eq!(r.action, Action::Replace);
        assert_eq!(r.separator, ";");
        assert_eq!(r.regex.as_str(), "(.*)");
        assert_eq!(r.replacement, "$1");
        assert_eq!(rules("- {action: KEEP}")[0].action, Action::Keep);
    }

    #[test]
    fn replace_joins_sources_and_expands() {
        let y = "- {source_labels: [a, b], regex: '(.*);(.*)', target_label: c, replacement: '${2}-$1'}";
        assert_eq!(run(y, &[("a", "x"), ("b", "y")]).unwrap(), r#"{a="x", b="y", c="y-x"}"#);
        // No match: nothing happens.
        let y = "- {source_labels: [a], regex: 'z+', target_label: c}";
        assert_eq!(run(y, &[("a", "x")]).unwrap(), r#"{a="x"}"#);
        // Empty result deletes the target.
        let y = "- {source_labels: [missing], target_label: a}";
        assert_eq!(run(y, &[("a", "x")]).unwrap(), "{}");
        // The regex is anchored.
        let y = "- {source_labels: [a], regex: 'b', target_label: c, replacement: yes}";
        assert_eq!(run(y, &[("a", "abc")]).unwrap(), r#"{a="abc"}"#);
        // Templated target label; an invalid expansion deletes the raw name.
        let y = "- {source_labels: [a], regex: '(.*)', target_label: 'l_$1', replacement: v}";
        assert_eq!(run(y, &[("a", "x")]).unwrap(), r#"{a="x", l_x="v"}"#);
        assert_eq!(run(y, &[("a", "-"), ("l_$1", "q")]).unwrap(), r#"{a="-"}"#);
        // Named groups.
        let y = "- {source_labels: [a], regex: '(?P<host>[^:]+):.*', target_label: h, replacement: '${host}'}";
        assert_eq!(run(y, &[("a", "h1:80")]).unwrap(), r#"{a="h1:80", h="h1"}"#);
    }

    #[test]
    fn expand_is_go_expand() {
        let re = Regex::new("(?P<x>a)(b)?").unwrap();
        let caps = re.captures("a").unwrap();
        for (tmpl, want) in [
            ("$1", "a"),
            ("${1}x", "ax"),
            ("$1x", ""), // the name is "1x": no such group
            ("$x", "a"),
            ("$2", ""),
            ("$$1", "$1"),
            ("$", "$"),
            ("${1", "${1"),
            ("$01", ""),
            ("-$-", "-$-"),
            ("$9", ""),
        ] {
            assert_eq!(expand(&re, &caps, tmpl), want, "{tmpl}");
        }
    }

    #[test]
    fn keep_drop_and_equal_actions() {
        let keep = "- {source_labels: [a], regex: 'x|y', action: keep}";
        assert!(run(keep, &[("a", "x")]).is_some());
        assert!(run(keep, &[("a", "xy")]).is_none());
        assert!(run(keep, &[]).is_none());
        let drop = "- {source_labels: [a], regex: 'x', action: drop}";
        assert!(run(drop, &[("a", "x")]).is_none());
        assert!(run(drop, &[("a", "z")]).is_some());
        let ke = "- {source_labels: [a], target_label: b, action: keepequal}";
        assert!(run(ke, &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(ke, &[("a", "1"), ("b", "2")]).is_none());
        assert!(run(ke, &[]).is_some()); // both empty
        let de = "- {source_labels: [a], target_label: b, action: dropequal}";
        assert!(run(de, &[("a", "1"), ("b", "1")]).is_none());
        assert!(run(de, &[("a", "1")]).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85c edef654fccc4a4d8 (hex); the last 8 bytes
        // big-endian modulo 1000.
        let want = 0xedef_654f_ccc4_a4d8_u64 % 1000;
        let y = "- {source_labels: [a], modulus: 1000, target_label: h, action: hashmod}";
        assert_eq!(run(y, &[("a", "foo")]).unwrap(), format!(r#"{{a="foo", h="{want}"}}"#));
    }

    #[test]
    fn label_name_actions() {
        let y = "- {regex: '__meta_(.+)', action: labelmap}";
        assert_eq!(run(y, &[("__meta_x", "1"), ("y", "2")]).unwrap(), r#"{__meta_x="1", x="1", y="2"}"#);
        let y = "- {regex: '__meta_(.+)', replacement: 'm_$1', action: labelmap}";
        assert_eq!(run(y, &[("__meta_x", "1")]).unwrap(), r#"{__meta_x="1", m_x="1"}"#);
        let y = "- {regex: 'a.*', action: labeldrop}";
        assert_eq!(run(y, &[("ab", "1"), ("ba", "2")]).unwrap(), r#"{ba="2"}"#);
        let y = "- {regex: 'a.*', action: labelkeep}";
        assert_eq!(run(y, &[("ab", "1"), ("ba", "2")]).unwrap(), r#"{ab="1"}"#);
        let y = "- {source_labels: [a], target_label: b, action: lowercase}\n- {source_labels: [a], target_label: c, action: uppercase}";
        assert_eq!(run(y, &[("a", "MiX")]).unwrap(), r#"{a="MiX", b="mix", c="MIX"}"#);
    }

    #[test]
    fn rules_apply_in_order() {
        let y = "
- {source_labels: [a], target_label: b}
- {source_labels: [b], regex: 'x', action: drop}
";
        assert!(run(y, &[("a", "x")]).is_none());
        assert!(run(y, &[("a", "y")]).is_some());
    }

    #[test]
    fn validation_errors_are_prometheus_errors() {
        for (yaml, want) in [
            ("- {source_labels: [a]}", "relabel configuration for replace action requires 'target_label' value"),
            ("- {action: hashmod, target_label: a}", "relabel configuration for hashmod requires non-zero modulus"),
            ("- {action: lowercase}", "relabel configuration for lowercase action requires 'target_label' value"),
            ("- {target_label: '1a'}", "\"1a\" is invalid 'target_label' for replace action"),
            ("- {target_label: 'a-$1'}", "\"a-$1\" is invalid 'target_label' for replace action"),
            ("- {action: uppercase, target_label: a, replacement: x}", "'replacement' can not be set for uppercase"),
            ("- {action: labelmap, replacement: 'a-b'}", "\"a-b\" is invalid 'replacement' for labelmap action"),
            ("- {action: keepequal, target_label: a, regex: x}", "keepequal action requires only 'source_labels'"),
            ("- {action: labeldrop, source_labels: [a]}", "labeldrop action requires only 'regex'"),
            ("- {action: labelkeep, target_label: a}", "labelkeep action requires only 'regex'"),
            ("- {action: explode}", "unknown relabel action \"explode\""),
            ("- {source_labels: ['a-b'], target_label: x}", "\"a-b\" is not a valid label name"),
            ("- {target_label: a, regxe: b}", "unknown field `regxe`"),
        ] {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e = err("- target_label: a\n  regex: '(unclosed'\n");
        assert!(e.contains("[0].regex: invalid regex \"(unclosed\": unclosed group at line 2"), "{e}");
    }

    #[test]
    fn numbers_are_read_as_strings() {
        let r = &rules("- {source_labels: [code], regex: 200, action: keep}")[0];
        assert_eq!(r.regex.as_str(), "200");
    }
}
