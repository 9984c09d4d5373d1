//! The `scrape_configs` part of a `prometheus.yml`, parsed then validated
//! into a typed form whose durations are milliseconds.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::Error;
use crate::discovery::FileSdConfig;
use crate::http::{Authorization, BasicAuth, ClientConfig, TlsConfig};
use crate::kubernetes::KubernetesSdConfig;
use crate::relabel::RelabelConfig;

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
    label_limit: u64,
    #[serde(default)]
    label_name_length_limit: u64,
    #[serde(default)]
    label_value_length_limit: u64,
    body_size_limit: Option<String>,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
    #[serde(default)]
    static_configs: Vec<StaticConfig>,
    #[serde(default)]
    file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    metric_relabel_configs: Vec<RelabelConfig>,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    tls_config: Option<TlsConfig>,
    bearer_token: Option<String>,
    bearer_token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    kubernetes_sd_configs: Vec<KubernetesSdConfig>,
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
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    /// Bytes of an uncompressed scrape body at most; 0 for no limit.
    pub body_size_limit: u64,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub client: ClientConfig,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `global.external_labels`, validated and kept; as in Prometheus they
    /// are not attached to scraped series (only to data sent elsewhere).
    pub external_labels: BTreeMap<String, String>,
    pub scrape_configs: Vec<ScrapeConfig>,
}

impl ScrapeConfig {
    /// Whether two jobs scrape their targets the same way: equal in
    /// everything but service discovery. A reload that changes only where a
    /// job's targets come from keeps the loops of its unchanged targets.
    pub fn same_scrape_settings(&self, other: &ScrapeConfig) -> bool {
        let without_sd = |c: &ScrapeConfig| ScrapeConfig {
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            ..c.clone()
        };
        without_sd(self) == without_sd(other)
    }
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
        let mut config =
            Self::parse(&text).map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes the relative file names of the config (file SD, secrets, TLS)
    /// relative to `dir`, the config file's folder, as Prometheus does.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for job in &mut self.scrape_configs {
            job.client.resolve_paths(dir);
            for k in &mut job.kubernetes_sd_configs {
                k.resolve_paths(dir);
            }
            for f in job.file_sd_configs.iter_mut().flat_map(|sd| sd.files.iter_mut()) {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
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
            match scheme.as_str() {
                "http" | "https" => {}
                _ => return Err(Error::Config(format!("{at}.scheme: must be \"http\" or \"https\", got {scheme:?}"))),
            }
            let client = ClientConfig {
                basic_auth: sc.basic_auth,
                authorization: sc.authorization,
                tls_config: sc.tls_config,
                follow_redirects: sc.follow_redirects.unwrap_or(true),
                enable_http2: sc.enable_http2.unwrap_or(true),
            }
            .with_bearer_token(sc.bearer_token, sc.bearer_token_file)
            .map_err(|e| Error::Config(format!("{at}: {e}")))?;
            let body_size_limit = match sc.body_size_limit.as_deref() {
                None => 0,
                Some(s) => {
                    crate::http::parse_size(s).map_err(|e| Error::Config(format!("{at}.body_size_limit: {e}")))?
                }
            };
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
                label_limit: sc.label_limit,
                label_name_length_limit: sc.label_name_length_limit,
                label_value_length_limit: sc.label_value_length_limit,
                body_size_limit,
                static_configs: sc.static_configs,
                file_sd_configs: sc.file_sd_configs,
                kubernetes_sd_configs: sc.kubernetes_sd_configs,
                relabel_configs: sc.relabel_configs,
                metric_relabel_configs: sc.metric_relabel_configs,
                client,
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
                label_limit: 0,
                label_name_length_limit: 0,
                label_value_length_limit: 0,
                body_size_limit: 0,
                static_configs: vec![StaticConfig { targets, labels: BTreeMap::new() }],
                file_sd_configs: Vec::new(),
                kubernetes_sd_configs: Vec::new(),
                relabel_configs: Vec::new(),
                metric_relabel_configs: Vec::new(),
                client: ClientConfig::default(),
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
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    kubernetes_sd_configs:\n      - role: pod\n        namespace: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("kubernetes_sd_configs") && e.contains("unknown field `namespace`") && e.contains("line 5"),
            "{e}"
        );
        let e = Config::parse("scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pods}]}]").unwrap_err();
        assert!(e.to_string().contains("role \"pods\""), "{e}");
        let c = Config::parse(
            "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod, kubeconfig_file: k.yml}]}]",
        )
        .unwrap();
        assert_eq!(c.scrape_configs[0].kubernetes_sd_configs[0].role, crate::kubernetes::Role::Pod);
        let e = Config::parse("scrape_configs: {{{").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}

#[cfg(test)]
mod prometheus_fields_tests {
    use super::*;

    #[test]
    fn relabeling_sd_and_auth_fields_load() {
        let c = Config::parse(
            r#"
scrape_configs:
  - job_name: k
    honor_timestamps: false
    sample_limit: 100
    label_limit: 30
    label_name_length_limit: 200
    label_value_length_limit: 500
    body_size_limit: 10MB
    follow_redirects: false
    enable_http2: true
    basic_auth: {username: u, password_file: secret}
    tls_config: {ca_file: ca.pem, insecure_skip_verify: true}
    file_sd_configs:
      - files: ['sd/*.json', sd/extra.yml]
        refresh_interval: 1m
    relabel_configs:
      - source_labels: [__meta_env]
        target_label: env
      - action: labelmap
        regex: __meta_(.+)
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
"#,
        )
        .unwrap();
        let j = &c.scrape_configs[0];
        assert!(!j.honor_timestamps);
        assert_eq!(
            (j.sample_limit, j.label_limit, j.label_name_length_limit, j.label_value_length_limit),
            (100, 30, 200, 500)
        );
        assert_eq!(j.body_size_limit, 10 << 20);
        assert!(!j.client.follow_redirects);
        assert_eq!(j.relabel_configs.len(), 2);
        assert_eq!(j.metric_relabel_configs[0].action, crate::relabel::Action::Drop);
        assert_eq!(j.file_sd_configs[0].refresh_interval_ms, 60_000);
        let mut c = c;
        c.resolve_paths(Path::new("/etc/pharos"));
        let j = &c.scrape_configs[0];
        assert_eq!(j.file_sd_configs[0].files[0], Path::new("/etc/pharos/sd/*.json"));
        let pw = j.client.basic_auth.as_ref().and_then(|b| b.password_file.clone());
        assert_eq!(pw.unwrap(), Path::new("/etc/pharos/secret"));
    }

    #[test]
    fn scrape_settings_ignore_service_discovery() {
        let jobs = |yaml: &str| Config::parse(yaml).unwrap().scrape_configs.remove(0);
        let a = jobs("scrape_configs: [{job_name: j, static_configs: [{targets: ['a:1']}]}]");
        let b = jobs("scrape_configs: [{job_name: j, file_sd_configs: [{files: [t.json]}]}]");
        let c = jobs("scrape_configs: [{job_name: j, sample_limit: 5, static_configs: [{targets: ['a:1']}]}]");
        assert!(a.same_scrape_settings(&b));
        assert!(!a.same_scrape_settings(&c));
    }

    #[test]
    fn legacy_bearer_token_file_is_authorization() {
        let mut c = Config::parse("scrape_configs: [{job_name: k, bearer_token_file: token}]").unwrap();
        c.resolve_paths(Path::new("/var/run"));
        let a = c.scrape_configs[0].client.authorization.clone().unwrap();
        assert_eq!(a.kind.as_deref(), Some("Bearer"));
        assert_eq!(a.credentials_file.unwrap(), Path::new("/var/run/token"));
        let e =
            Config::parse("scrape_configs: [{job_name: k, bearer_token: a, basic_auth: {username: u}}]").unwrap_err();
        assert!(e.to_string().contains("at most one of basic_auth, oauth2, bearer_token"), "{e}");
    }

    #[test]
    fn bad_rules_name_the_field_and_line() {
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - regex: '(x'\n        target_label: y\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("relabel_configs[0].regex: invalid regex") && e.contains("line 4"), "{e}");
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - source_labels: [a]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("metric_relabel_configs") && e.contains("line 4") && e.contains("requires 'target_label'"),
            "{e}"
        );
        let e = Config::parse("scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [t.txt]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("file_sd_configs") && e.contains("line 4") && e.contains("not valid for file discovery"),
            "{e}"
        );
        let e = Config::parse("scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, pasword: p}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pasword") && e.contains("line 3"), "{e}");
        let e = Config::parse("scrape_configs: [{job_name: a, scheme: ftp}]").unwrap_err().to_string();
        assert!(e.contains("scheme") && e.contains("ftp"), "{e}");
        let e = Config::parse("scrape_configs: [{job_name: a, authorization: {type: Basic}}]").unwrap_err().to_string();
        assert!(e.contains("scrape_configs[0]") && e.contains("basic_auth"), "{e}");
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

    #[test]
    fn the_kubernetes_example_loads() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus-kubernetes.yml");
        let c = super::Config::load(&p).unwrap();
        let roles: Vec<_> = c.scrape_configs.iter().map(|j| j.kubernetes_sd_configs[0].role).collect();
        use crate::kubernetes::Role;
        assert_eq!(roles, [Role::Pod, Role::Endpoints, Role::Node]);
        let eps = &c.scrape_configs[1].kubernetes_sd_configs[0];
        assert!(eps.own_namespace);
        assert_eq!(eps.selector(Role::Service).and_then(|s| s.label.as_deref()), Some("prometheus.io/scrape=true"));
    }

    #[test]
    fn the_file_sd_example_loads_and_discovers_its_targets() {
        use std::sync::Arc;
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus-file-sd.yml");
        let c = super::Config::load(&p).unwrap();
        let node = Arc::new(c.scrape_configs[0].clone());
        let mut sd = crate::discovery::FileDiscovery::new(node.file_sd_configs[0].clone());
        assert!(sd.refresh(0));
        let t = crate::target::targets_from_groups(&node, sd.groups());
        let labels: Vec<String> = t.iter().map(|t| t.labels.to_string()).collect();
        assert_eq!(
            labels,
            [
                r#"{env="dev", instance="127.0.0.1", job="node", team="infra"}"#,
                r#"{env="dev", instance="127.0.0.2", job="node", team="infra"}"#
            ]
        );
        assert!(t[0].discovered_labels.get("__meta_filepath").is_some_and(|f| f.ends_with("nodes.json")));
        let api = Arc::new(c.scrape_configs[1].clone());
        let t = crate::target::targets_from_groups(&api, &crate::target::static_groups(&api));
        assert_eq!(t[0].url, "http://127.0.0.1:8080/internal/metrics?format=prometheus");
    }
}
