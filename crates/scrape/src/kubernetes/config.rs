//! One `kubernetes_sd_configs` entry, parsed and checked as Prometheus 2.42
//! checks it (`discovery/kubernetes.SDConfig`): `role`, `api_server`,
//! `kubeconfig_file`, `namespaces`, `selectors`, `attach_metadata` and the
//! inlined HTTP client settings (`basic_auth`, `authorization`,
//! `bearer_token[_file]`, `tls_config`, ...). An unknown field is an error
//! naming it, with its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::http::{Authorization, BasicAuth, ClientConfig, TlsConfig};

/// The kind of object a discovery watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Pod,
    Service,
    Endpoints,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Service => "service",
            Role::Endpoints => "endpoints",
            Role::Node => "node",
        }
    }

    /// The selector roles a discovery of this role accepts, as Prometheus.
    fn selector_roles(self) -> &'static [Role] {
        match self {
            Role::Pod => &[Role::Pod],
            Role::Service => &[Role::Service],
            Role::Endpoints => &[Role::Pod, Role::Service, Role::Endpoints],
            Role::Node => &[Role::Node],
        }
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "pod" => Ok(Role::Pod),
        "service" => Ok(Role::Service),
        "endpoints" => Ok(Role::Endpoints),
        "node" => Ok(Role::Node),
        "endpointslice" | "ingress" => Err(format!("role {s:?} is not supported by this version of Pharos")),
        _ => Err(format!("unknown Kubernetes SD role {s:?}")),
    }
}

/// A label and field selector for the objects of one role.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub role: Role,
    pub label: Option<String>,
    pub field: Option<String>,
}

/// One validated `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSdConfig {
    pub role: Role,
    /// The API server URL; with neither this nor `kubeconfig_file`, the
    /// in-cluster service account is used.
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<PathBuf>,
    /// Namespaces to watch; empty (and not `own_namespace`) means all.
    pub namespaces: Vec<String>,
    pub own_namespace: bool,
    pub selectors: Vec<Selector>,
    /// Credentials and TLS towards the API server (with `api_server` only).
    pub client: ClientConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespaces {
    #[serde(default)]
    own_namespace: bool,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    role: Option<String>,
    label: Option<String>,
    field: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttachMetadata {
    #[serde(default)]
    node: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetesSd {
    role: Option<String>,
    api_server: Option<String>,
    kubeconfig_file: Option<PathBuf>,
    namespaces: Option<RawNamespaces>,
    #[serde(default)]
    selectors: Vec<RawSelector>,
    attach_metadata: Option<RawAttachMetadata>,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<TlsConfig>,
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
    proxy_url: Option<String>,
    oauth2: Option<serde_yaml::Value>,
}

impl<'de> Deserialize<'de> for KubernetesSdConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawKubernetesSd::deserialize(d)?;
        KubernetesSdConfig::try_from(raw).map_err(serde::de::Error::custom)
    }
}

/// Go's `labels.Parse` / `fields.ParseSelector` accept these; we check the
/// shape (comma-separated terms, each a key with an operator) so a typo is
/// found at load time rather than by the API server.
fn check_selector(kind: &str, s: &str) -> Result<(), String> {
    for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let key = term.split(['=', '!', ' ', '(']).next().unwrap_or("").trim_start_matches('!');
        let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !key_ok {
            return Err(format!("invalid selector: {s:?}: {kind} selector term {term:?} has no valid key"));
        }
        if kind == "field" && !term.contains('=') {
            return Err(format!("invalid selector: {s:?}: field selector term {term:?} needs = or !="));
        }
    }
    Ok(())
}

impl TryFrom<RawKubernetesSd> for KubernetesSdConfig {
    type Error = String;

    fn try_from(raw: RawKubernetesSd) -> Result<Self, String> {
        let role = match raw.role.as_deref() {
            None | Some("") => {
                return Err("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)".into());
            }
            Some(r) => parse_role(r).map_err(|e| format!("role: {e}"))?,
        };
        if raw.oauth2.is_some() {
            return Err("oauth2: not supported by this version of Pharos".into());
        }
        if raw.proxy_url.is_some() {
            return Err("proxy_url: not supported by this version of Pharos".into());
        }
        if raw.attach_metadata.is_some_and(|a| a.node) {
            return Err("attach_metadata.node: not supported by this version of Pharos".into());
        }
        let custom_client = raw.basic_auth.is_some()
            || raw.authorization.is_some()
            || raw.bearer_token.is_some()
            || raw.bearer_token_file.is_some()
            || raw.tls_config.is_some();
        let client = ClientConfig {
            basic_auth: raw.basic_auth,
            authorization: raw.authorization,
            tls_config: raw.tls_config,
            follow_redirects: raw.follow_redirects.unwrap_or(true),
            enable_http2: raw.enable_http2.unwrap_or(true),
        }
        .with_bearer_token(raw.bearer_token, raw.bearer_token_file)?;
        let api_server = raw.api_server.filter(|s| !s.is_empty());
        if let Some(url) = &api_server
            && reqwest::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https") || !u.has_host())
        {
            return Err(format!("api_server: {url:?} is not a valid URL"));
        }
        let kubeconfig_file = raw.kubeconfig_file.filter(|p| !p.as_os_str().is_empty());
        match (&api_server, &kubeconfig_file) {
            (Some(_), Some(_)) => return Err("cannot use 'kubeconfig_file' and 'api_server' simultaneously".into()),
            (None, Some(_)) if custom_client => {
                return Err("cannot use a custom HTTP client configuration together with 'kubeconfig_file'".into());
            }
            (None, None) if custom_client => {
                return Err(
                    "to use custom HTTP client configuration please provide the 'api_server' URL explicitly".into()
                );
            }
            _ => {}
        }
        let mut selectors: Vec<Selector> = Vec::new();
        for s in raw.selectors {
            let sel_role = match s.role.as_deref() {
                None | Some("") => return Err("selectors: role missing".into()),
                Some(r) => parse_role(r).map_err(|e| format!("selectors: {e}"))?,
            };
            if !role.selector_roles().contains(&sel_role) {
                let allowed: Vec<&str> = role.selector_roles().iter().map(|r| r.as_str()).collect();
                return Err(format!(
                    "selectors: {} role supports only {} selectors",
                    role.as_str(),
                    allowed.join(", ")
                ));
            }
            if selectors.iter().any(|x| x.role == sel_role) {
                return Err(format!("selectors: duplicated selector role: {}", sel_role.as_str()));
            }
            let (label, field) = (s.label.filter(|l| !l.is_empty()), s.field.filter(|f| !f.is_empty()));
            if let Some(l) = &label {
                check_selector("label", l).map_err(|e| format!("selectors: {e}"))?;
            }
            if let Some(f) = &field {
                check_selector("field", f).map_err(|e| format!("selectors: {e}"))?;
            }
            selectors.push(Selector { role: sel_role, label, field });
        }
        let ns = raw.namespaces.unwrap_or(RawNamespaces { own_namespace: false, names: Vec::new() });
        Ok(KubernetesSdConfig {
            role,
            api_server,
            kubeconfig_file,
            namespaces: ns.names,
            own_namespace: ns.own_namespace,
            selectors,
            client,
        })
    }
}

impl KubernetesSdConfig {
    /// The selector for objects of `role`, if one is configured.
    pub fn selector(&self, role: Role) -> Option<&Selector> {
        self.selectors.iter().find(|s| s.role == role)
    }

    /// Makes relative file names relative to `dir`, the config file's folder.
    pub fn resolve_paths(&mut self, dir: &Path) {
        self.client.resolve_paths(dir);
        if let Some(p) = &mut self.kubeconfig_file
            && p.is_relative()
        {
            *p = dir.join(&*p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<KubernetesSdConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn prometheus_examples_load() {
        let c = parse(
            "role: endpoints\napi_server: https://k8s:6443\nbearer_token_file: /t\ntls_config: {ca_file: /ca.crt}\n\
             namespaces: {names: [a, b], own_namespace: true}\n\
             selectors: [{role: pod, label: 'app=x,tier!=db'}, {role: service, field: metadata.name=s}]\n",
        )
        .unwrap();
        assert_eq!(c.role, Role::Endpoints);
        assert_eq!(c.namespaces, ["a", "b"]);
        assert!(c.own_namespace);
        assert_eq!(c.selector(Role::Pod).and_then(|s| s.label.as_deref()), Some("app=x,tier!=db"));
        assert_eq!(c.selector(Role::Service).and_then(|s| s.field.as_deref()), Some("metadata.name=s"));
        assert_eq!(c.client.authorization.unwrap().credentials_file.unwrap(), Path::new("/t"));
        let c = parse("role: node\nkubeconfig_file: kube.yml\n").unwrap();
        assert_eq!(c.kubeconfig_file.unwrap(), Path::new("kube.yml"));
        assert!(parse("role: pod\nbasic_auth: {username: u, password: p}\napi_server: http://h:1\n").is_ok());
    }

    #[test]
    fn errors_are_prometheus_errors_naming_the_field() {
        for (yaml, want) in [
            ("role: pods", "unknown Kubernetes SD role \"pods\""),
            ("api_server: http://h", "role missing"),
            ("role: pod\nnamespace: {names: [a]}", "unknown field `namespace`"),
            ("role: pod\nnamespaces: {name: [a]}", "unknown field `name`"),
            ("role: pod\nselectors: [{role: pod, labels: a=b}]", "unknown field `labels`"),
            ("role: pod\nselectors: [{role: service, label: a=b}]", "pod role supports only pod selectors"),
            ("role: endpoints\nselectors: [{role: pod}, {role: pod}]", "duplicated selector role: pod"),
            ("role: pod\nselectors: [{role: pod, field: '%%'}]", "invalid selector"),
            ("role: pod\napi_server: h\nkubeconfig_file: k", "is not a valid URL"),
            ("role: pod\napi_server: http://h\nkubeconfig_file: k", "simultaneously"),
            ("role: pod\nkubeconfig_file: k\nbearer_token: t", "together with 'kubeconfig_file'"),
            ("role: pod\nbearer_token: t", "provide the 'api_server' URL explicitly"),
            ("role: pod\napi_server: http://h\nbearer_token: t\nbearer_token_file: f", "at most one of bearer_token"),
            ("role: endpointslice", "not supported"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
