//! Service discovery: where a job's target groups come from.
//!
//! `static_configs` are groups written in the config; `file_sd_configs`
//! read groups from JSON or YAML files (globs allowed in the last path
//! element), as Prometheus's file SD does, but by polling each file's
//! modification time instead of inotify. A file that cannot be read or
//! parsed keeps its last good groups and its error is logged once per
//! change. Reading is blocking file I/O: callers run [`FileDiscovery::refresh`]
//! off the async threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pharos_model::{Label, Labels};
use serde::Deserialize;

use crate::relabel::is_valid_label_name;

/// The label naming the file a group came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// A group of targets sharing labels, as Prometheus's `targetgroup.Group`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub source: String,
    /// Labels of each target (by index in `targets`) that override the
    /// group's, as a Prometheus target's own label set does (Kubernetes SD
    /// sets `__address__` and the container or port labels there).
    #[serde(skip)]
    pub target_labels: Vec<BTreeMap<String, String>>,
}

impl TargetGroup {
    /// The discovered label set of each target: the group's labels plus
    /// `__address__` and the target's own labels, which win over the group's.
    pub fn discovered(&self) -> impl Iterator<Item = Labels> + '_ {
        self.targets.iter().enumerate().map(|(i, t)| {
            let mut merged = self.labels.clone();
            merged.insert("__address__".into(), t.clone());
            if let Some(own) = self.target_labels.get(i) {
                merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Labels::new(merged.into_iter().map(|(name, value)| Label { name, value }).collect())
        })
    }

    fn validate(&self) -> Result<(), String> {
        match self.labels.keys().find(|k| !is_valid_label_name(k)) {
            Some(k) => Err(format!("{k:?} is not a valid label name")),
            None => Ok(()),
        }
    }
}

/// One `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawFileSd")]
pub struct FileSdConfig {
    pub files: Vec<PathBuf>,
    pub refresh_interval_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSd {
    #[serde(default)]
    files: Vec<String>,
    refresh_interval: Option<String>,
}

impl TryFrom<RawFileSd> for FileSdConfig {
    type Error = String;

    fn try_from(raw: RawFileSd) -> Result<Self, String> {
        if raw.files.is_empty() {
            return Err("file service discovery config must contain at least one path name".into());
        }
        for f in &raw.files {
            if !valid_sd_path(f) {
                return Err(format!("path name {f:?} is not valid for file discovery"));
            }
        }
        let refresh_interval_ms = match raw.refresh_interval.as_deref() {
            None => 300_000,
            Some(s) => match pharos_model::parse_duration_ms(s) {
                Ok(ms) if ms > 0 => ms,
                _ => return Err(format!("refresh_interval: not a valid duration: {s:?}")),
            },
        };
        Ok(FileSdConfig { files: raw.files.into_iter().map(PathBuf::from).collect(), refresh_interval_ms })
    }
}

/// Prometheus's `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`: a known
/// extension, and a `*` only in the last path element.
fn valid_sd_path(p: &str) -> bool {
    let ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|e| p.len() > e.len() && p.ends_with(e) && p.as_bytes()[p.len() - e.len() - 1] == b'.');
    let star_ok = match p.find('*') {
        None => true,
        Some(i) => !p[i..].contains('/'),
    };
    ext_ok && star_ok
}

/// Reads one SD file: YAML, or JSON for a `.json` name (read by the YAML
/// parser, of which JSON is a subset). Each group gets `__meta_filepath`.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    parse_groups(&text, is_json, &path.display().to_string())
}

/// Parses target groups of the file named `name`.
pub fn parse_groups(text: &str, is_json: bool, name: &str) -> Result<Vec<TargetGroup>, String> {
    let groups: Vec<Option<TargetGroup>> = if text.trim().is_empty() {
        if is_json {
            return Err("unexpected end of JSON input".into());
        }
        Vec::new()
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    let mut out = Vec::with_capacity(groups.len());
    for (i, g) in groups.into_iter().enumerate() {
        let mut g = g.ok_or("nil target group item found")?;
        g.validate()?;
        g.labels.insert(FILEPATH_LABEL.into(), name.to_string());
        g.source = format!("{name}:{i}");
        out.push(g);
    }
    Ok(out)
}

/// The existing files a pattern names, sorted; wildcards (`*`, `?`, `[...]`)
/// only in the last path element, as Prometheus documents.
pub fn list_files(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    if !name.contains(['*', '?', '[']) {
        return if pattern.is_file() { vec![pattern.to_path_buf()] } else { Vec::new() };
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard_match(name, n)))
        .map(|e| dir.join(e.file_name()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Go's `filepath.Match` for one path element: `*`, `?`, `[abc]`, `[a-z]`,
/// `[^a]`, and `\` escaping.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| match_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && match_from(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            let Some((matched, rest)) = class(&p[1..], *c) else { return false };
            matched && match_from(rest, &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && match_from(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && match_from(&p[1..], &n[1..]),
    }
}

/// Matches `c` against a class body (after `[`); returns whether it matched
/// and the pattern after `]`, or `None` for a malformed class.
fn class(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negate, mut p) = match p.first() {
        Some('^') => (true, &p[1..]),
        _ => (false, p),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        match p.first()? {
            ']' if !first => return Some((matched != negate, &p[1..])),
            _ => {}
        }
        first = false;
        let (lo, rest) = class_char(p)?;
        p = rest;
        let mut hi = lo;
        if p.first() == Some(&'-') && p.get(1).is_some_and(|c| *c != ']') {
            (hi, p) = class_char(&p[1..])?;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn class_char(p: &[char]) -> Option<(char, &[char])> {
    match p {
        ['\\', c, rest @ ..] => Some((*c, rest)),
        [c, rest @ ..] => Some((*c, rest)),
        [] => None,
    }
}

/// The state of one `file_sd_configs` entry: the groups of each file as last
/// read successfully, and the modification times seen.
#[derive(Debug)]
pub struct FileDiscovery {
    config: FileSdConfig,
    files: BTreeMap<PathBuf, FileState>,
    last_full_ms: Option<i64>,
}

#[derive(Debug)]
struct FileState {
    mtime: Option<SystemTime>,
    groups: Vec<TargetGroup>,
}

impl FileDiscovery {
    pub fn new(config: FileSdConfig) -> Self {
        FileDiscovery { config, files: BTreeMap::new(), last_full_ms: None }
    }

    /// Lists the files again and reads those that are new or whose
    /// modification time changed, or every file once per refresh interval.
    /// Returns whether the groups changed.
    pub fn refresh(&mut self, now_ms: i64) -> bool {
        let full = self.last_full_ms.is_none_or(|t| now_ms - t >= self.config.refresh_interval_ms);
        if full {
            self.last_full_ms = Some(now_ms);
        }
        let mut listed: Vec<PathBuf> = self.config.files.iter().flat_map(|p| list_files(p)).collect();
        listed.sort();
        listed.dedup();
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| listed.contains(p));
        changed |= self.files.len() != before;
        for path in listed {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let known = self.files.get(&path);
            if !full && known.is_some_and(|s| s.mtime == mtime) {
                continue;
            }
            let state = self.files.entry(path.clone()).or_insert(FileState { mtime: None, groups: Vec::new() });
            state.mtime = mtime;
            match read_file(&path) {
                Ok(groups) => {
                    if groups != state.groups {
                        state.groups = groups;
                        changed = true;
                    }
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "file SD: cannot read file, keeping its last targets")
                }
            }
        }
        changed
    }

    /// Every group of every file, in file order.
    pub fn groups(&self) -> impl Iterator<Item = &TargetGroup> {
        self.files.values().flat_map(|s| s.groups.iter())
    }

    /// How often to look at modification times: at most every 5 s, and at
    /// least once per refresh interval.
    pub fn poll_interval_ms(&self) -> i64 {
        self.config.refresh_interval_ms.min(5_000)
    }

    pub fn config(&self) -> &FileSdConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_go_filepath_match() {
        for (p, n, want) in [
            ("*.json", "a.json", true),
            ("*.json", "a.yml", false),
            ("t?.yml", "t1.yml", true),
            ("t?.yml", "t12.yml", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("a*b*c", "aXbYc", true),
            ("[", "a", false),
        ] {
            assert_eq!(wildcard_match(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn sd_paths_are_checked_like_prometheus() {
        assert!(valid_sd_path("targets/*.json"));
        assert!(valid_sd_path("/etc/t.YAML"));
        assert!(!valid_sd_path("t.txt"));
        assert!(!valid_sd_path("*/t.json"));
        assert!(valid_sd_path(".json"));
        assert!(!valid_sd_path("json"));
    }

    #[test]
    fn json_and_yaml_groups() {
        let g = parse_groups(r#"[{"targets": ["a:1", "b:2"], "labels": {"env": "p"}}]"#, true, "f.json").unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].source, "f.json:0");
        let d: Vec<String> = g[0].discovered().map(|l| l.to_string()).collect();
        assert_eq!(d[0], r#"{__address__="a:1", __meta_filepath="f.json", env="p"}"#);
        let g = parse_groups("- targets: [c:3]\n", false, "f.yml").unwrap();
        assert_eq!(g[0].targets, vec!["c:3"]);
        assert_eq!(parse_groups("", false, "f.yml").unwrap(), vec![]);
        assert!(parse_groups("", true, "f.json").is_err());
        assert!(parse_groups("- targets: [a]\n  labelz: {}\n", false, "f.yml").unwrap_err().contains("labelz"));
        assert!(parse_groups("- labels: {'a-b': x}\n", false, "f.yml").unwrap_err().contains("not a valid label name"));
        assert!(parse_groups("- null\n", false, "f.yml").unwrap_err().contains("nil target group"));
    }

    #[test]
    fn file_changes_are_picked_up_and_broken_files_keep_their_targets() {
        let dir = std::env::temp_dir().join(format!("pharos-file-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.yml");
        std::fs::write(&a, "- targets: ['h:1']\n").unwrap();
        std::fs::write(dir.join("b.json"), r#"[{"targets": ["h:2"]}]"#).unwrap();
        std::fs::write(dir.join("c.txt"), "ignored").unwrap();
        let cfg = FileSdConfig { files: vec![dir.join("*.yml"), dir.join("*.json")], refresh_interval_ms: 300_000 };
        let mut sd = FileDiscovery::new(cfg);
        let targets = |sd: &FileDiscovery| sd.groups().flat_map(|g| g.targets.clone()).collect::<Vec<_>>();
        assert!(sd.refresh(0));
        assert_eq!(targets(&sd), vec!["h:1", "h:2"]);
        assert!(!sd.refresh(1_000), "nothing changed");
        // A new mtime is noticed without waiting for the refresh interval.
        std::fs::write(&a, "- targets: ['h:1', 'h:3']\n").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(later).unwrap();
        assert!(sd.refresh(2_000));
        assert_eq!(targets(&sd), vec!["h:1", "h:3", "h:2"]);
        // A broken file keeps its last good targets.
        std::fs::write(&a, "- targets: [").unwrap();
        let later = later + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(later).unwrap();
        assert!(!sd.refresh(3_000));
        assert_eq!(targets(&sd), vec!["h:1", "h:3", "h:2"]);
        // A removed file takes its targets with it.
        std::fs::remove_file(dir.join("b.json")).unwrap();
        assert!(sd.refresh(4_000));
        assert_eq!(targets(&sd), vec!["h:1", "h:3"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
