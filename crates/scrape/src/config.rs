//! The `scrape_configs` part of a `prometheus.yml`, parsed then validated
//! into a typed form whose durations are milliseconds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::Error;

/// A `prometheus.yml` as Pharos reads it. Sections that belong to
/// Prometheus's other duties (rules, alerting, remote write) are accepted
/// and ignored so an existing file loads unchanged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    scrape_configs: Vec<RawScrapeConfig>,
    #[serde(default, rename = "rule_files")]
    _rule_files: IgnoredAny,
    #[serde(default, rename = "alerting")]
    _alerting: IgnoredAny,
    #[serde(default, rename = "remote_write")]
    _remote_write: IgnoredAny,
    #[serde(default, rename = "remote_read")]
    _remote_read: IgnoredAny,
    #[serde(default, rename = "storage")]
    _storage: IgnoredAny,
    #[serde(default, rename = "tracing")]
    _tracing: IgnoredAny,
    #[serde(default, rename = "scrape_config_files")]
    _scrape_config_files: IgnoredAny,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default, rename = "query_log_file")]
    _query_log_file: IgnoredAny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrapeConfig {
    job_name: String,
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    honor_labels: bool,
    honor_timestamps: Option<bool>,
    #[serde(default)]
    sample_limit: u64,
    #[serde(default)]
    static_configs: Vec<StaticConfig>,
    // Known Prometheus fields that this version does not implement yet:
    // rejected with a clear error rather than silently ignored.
    file_sd_configs: Option<serde_yaml::Value>,
    kubernetes_sd_configs: Option<serde_yaml::Value>,
    relabel_configs: Option<serde_yaml::Value>,
    metric_relabel_configs: Option<serde_yaml::Value>,
    basic_auth: Option<serde_yaml::Value>,
    authorization: Option<serde_yaml::Value>,
    tls_config: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One validated scrape job.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: u64,
    pub static_configs: Vec<StaticConfig>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub external_labels: BTreeMap<String, String>,
    pub scrape_configs: Vec<ScrapeConfig>,
}

fn duration(field: &str, v: Option<&str>, default: i64) -> Result<i64, Error> {
    match v {
        None => Ok(default),
        Some(s) => match pharos_model::parse_duration_ms(s) {
            Ok(ms) if ms > 0 => Ok(ms),
            Ok(_) => Err(Error::Config(format!("{field}: duration must be positive, got {s:?}"))),
            Err(e) => Err(Error::Config(format!("{field}: {e}"))),
        },
    }
}

impl Config {
    /// Reads and validates a file; errors name the file and the field or line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?
        };
        let g = &raw.global;
        let interval = duration("global.scrape_interval", g.scrape_interval.as_deref(), 60_000)?;
        let timeout = duration("global.scrape_timeout", g.scrape_timeout.as_deref(), 10_000.min(interval))?;
        duration("global.evaluation_interval", g.evaluation_interval.as_deref(), 60_000)?;
        let mut jobs: Vec<ScrapeConfig> = Vec::new();
        for (i, sc) in raw.scrape_configs.into_iter().enumerate() {
            let at = format!("scrape_configs[{i}] (job {:?})", sc.job_name);
            let unsupported = [
                ("file_sd_configs", sc.file_sd_configs.is_some()),
                ("kubernetes_sd_configs", sc.kubernetes_sd_configs.is_some()),
                ("relabel_configs", sc.relabel_configs.is_some()),
                ("metric_relabel_configs", sc.metric_relabel_configs.is_some()),
                ("basic_auth", sc.basic_auth.is_some()),
                ("authorization", sc.authorization.is_some()),
                ("tls_config", sc.tls_config.is_some()),
            ];
            if let Some((f, _)) = unsupported.iter().find(|(_, set)| *set) {
                return Err(Error::Config(format!("{at}: {f} is not supported by this version of Pharos yet")));
            }
            if sc.job_name.is_empty() {
                return Err(Error::Config(format!("scrape_configs[{i}].job_name: must not be empty")));
            }
            if jobs.iter().any(|j| j.job_name == sc.job_name) {
                return Err(Error::Config(format!(
                    "{at}.job_name: found multiple scrape configs with job name {:?}",
                    sc.job_name
                )));
            }
            let interval_ms = duration(&format!("{at}.scrape_interval"), sc.scrape_interval.as_deref(), interval)?;
            let timeout_ms =
                duration(&format!("{at}.scrape_timeout"), sc.scrape_timeout.as_deref(), timeout.min(interval_ms))?;
            if timeout_ms > interval_ms {
                return Err(Error::Config(format!("{at}.scrape_timeout: scrape timeout greater than scrape interval")));
            }
            let scheme = sc.scheme.unwrap_or_else(|| "http".into());
            if scheme != "http" {
                return Err(Error::Config(format!("{at}.scheme: only \"http\" is supported yet, got {scheme:?}")));
            }
            let metrics_path = sc.metrics_path.unwrap_or_else(|| "/metrics".into());
            if !metrics_path.starts_with('/') {
                return Err(Error::Config(format!("{at}.metrics_path: must start with '/', got {metrics_path:?}")));
            }
            for (j, st) in sc.static_configs.iter().enumerate() {
                for t in &st.targets {
                    if t.is_empty() || t.contains('/') || t.contains("://") {
                        return Err(Error::Config(format!(
                            "{at}.static_configs[{j}].targets: {t:?} is not a valid host:port"
                        )));
                    }
                }
            }
            jobs.push(ScrapeConfig {
                job_name: sc.job_name,
                interval_ms,
                timeout_ms,
                metrics_path,
                scheme,
                params: sc.params,
                honor_labels: sc.honor_labels,
                honor_timestamps: sc.honor_timestamps.unwrap_or(true),
                sample_limit: sc.sample_limit,
                static_configs: sc.static_configs,
            });
        }
        Ok(Config { external_labels: raw.global.external_labels, scrape_configs: jobs })
    }

    /// The configuration `pharos up` uses without a file: scrape itself
    /// (and, in a cluster, every process) as job `pharos` every 15 s.
    pub fn self_scrape(targets: Vec<String>) -> Self {
        Config {
            external_labels: BTreeMap::new(),
            scrape_configs: vec![ScrapeConfig {
                job_name: "pharos".into(),
                interval_ms: 15_000,
                timeout_ms: 10_000,
                metrics_path: "/metrics".into(),
                scheme: "http".into(),
                params: BTreeMap::new(),
                honor_labels: false,
                honor_timestamps: true,
                sample_limit: 0,
                static_configs: vec![StaticConfig { targets, labels: BTreeMap::new() }],
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_prometheus_yml() {
        let c = Config::parse(
            r#"
global:
  scrape_interval: 15s
rule_files: []
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["localhost:9100"]
        labels: {env: prod}
  - job_name: api
    scrape_interval: 5s
    metrics_path: /m
"#,
        )
        .unwrap();
        assert_eq!(c.scrape_configs.len(), 2);
        assert_eq!(c.scrape_configs[0].interval_ms, 15_000);
        assert_eq!(c.scrape_configs[0].timeout_ms, 10_000);
        assert_eq!(c.scrape_configs[1].interval_ms, 5_000);
        assert_eq!(c.scrape_configs[1].timeout_ms, 5_000);
        assert_eq!(c.scrape_configs[1].metrics_path, "/m");
    }

    #[test]
    fn errors_name_the_field_or_line() {
        let e = Config::parse("scrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n").unwrap_err().to_string();
        assert!(e.contains("scrape_intervall") && e.contains("line 3"), "{e}");
        let e = Config::parse("scrape_configs:\n  - job_name: a\n    scrape_interval: 5x\n").unwrap_err().to_string();
        assert!(e.contains("scrape_configs[0]") && e.contains("scrape_interval"), "{e}");
        let e = Config::parse("scrape_configs: [{job_name: a, scrape_interval: 5s, scrape_timeout: 10s}]").unwrap_err();
        assert!(e.to_string().contains("scrape_timeout"), "{e}");
        let e = Config::parse("scrape_configs: [{job_name: a}, {job_name: a}]").unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
        let e = Config::parse("scrape_configs: [{job_name: a, relabel_configs: []}]").unwrap_err();
        assert!(e.to_string().contains("relabel_configs"), "{e}");
        let e = Config::parse("scrape_configs: {{{").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn the_shipped_example_loads() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus.yml");
        let c = super::Config::load(&p).unwrap();
        assert_eq!(c.scrape_configs.len(), 2);
    }
}
